"""Which normalization of the learned adjacency, on Cora and CiteSeer (public
split): the ``preserve`` recipe with row + column gates under each
normalization, and the default (row gates, row normalization), same seeds,
``fit_structure`` (validation-selected checkpoint with at least
``min_sparsity`` zeros; test accuracy only reported).

    python benchmarks/normalizations.py --seeds 10                 # all settings
    python benchmarks/normalizations.py --settings default sinkhorn1 --seeds 2

Writes ``results/normalizations.json`` (one record per dataset and setting:
mean, std, zeros, per-seed values) and prints a markdown table with each
setting's difference to the best setting of the dataset.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# name: overrides of recipe_config("preserve")
SETTINGS = {
    "default": {},                                                    # row gates, row norm
    "sinkhorn1": dict(groups="both", normalization="sinkhorn", num_iters=1),
    "sinkhorn10": dict(groups="both", normalization="sinkhorn", num_iters=10),
    "balanced1": dict(groups="both", normalization="balanced", num_iters=1),
    "sym": dict(groups="both", normalization="sym"),
}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["Cora", "CiteSeer"])
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--root", default=None, help="data root (default: $GRAPHSPARSE_DATA)")
    parser.add_argument("--out", default="results/normalizations.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from graphsparse.data.planetoid import load_planetoid
    from graphsparse.structure import fit_structure, recipe_config
    from graphsparse.utils.io import atomic_write_text

    records = []
    for name in args.datasets:
        data = load_planetoid(name, root=args.root)
        x = data.x.to_dense() if data.x.layout != torch.strided else data.x
        for setting in args.settings:
            cfg = recipe_config("preserve", SETTINGS[setting])
            accs, zeros, secs = [], [], []
            for seed in range(args.seeds):
                t0 = time.perf_counter()
                res = fit_structure(x, data.edge_index, data.y, data.train_mask, data.val_mask,
                                    data.test_mask, config=cfg, seed=seed)
                secs.append(time.perf_counter() - t0)
                accs.append(100 * res.test_acc)
                zeros.append(res.edge_sparsity)
                print(f"{name:9s} {setting:11s} seed {seed}: {accs[-1]:.2f} "
                      f"({100 * zeros[-1]:.1f}% zeros, {secs[-1]:.0f} s)", flush=True)
            records.append(dict(dataset=name, setting=setting, overrides=SETTINGS[setting],
                                mean=statistics.fmean(accs),
                                std=statistics.stdev(accs) if len(accs) > 1 else 0.0,
                                zeros=statistics.fmean(zeros), seconds=statistics.fmean(secs),
                                per_seed=accs, seeds=args.seeds))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(records, indent=1))
    print("\n| setting | " + " | ".join(args.datasets) + " |")
    print("|---|" + "---|" * len(args.datasets))
    best = {d: max(r["mean"] for r in records if r["dataset"] == d) for d in args.datasets}
    for setting in args.settings:
        cells = []
        for d in args.datasets:
            r = next(r for r in records if r["dataset"] == d and r["setting"] == setting)
            cells.append(f"{r['mean']:.2f} ± {r['std']:.2f} ({r['mean'] - best[d]:+.2f}; "
                         f"{100 * r['zeros']:.0f}% zeros)")
        print(f"| {setting} | " + " | ".join(cells) + " |")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main(sys.argv[1:])
