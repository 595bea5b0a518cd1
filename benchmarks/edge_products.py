"""Memory and time of per-edge products of endpoint features, on a random
graph, against their gathered forms (``[E, C]`` tensors) in the same run:

* ``edge_cosine`` (the ``StructureLearner``'s agreement prior, no gradient):
  normalized rows and one SDDMM, against
  ``F.cosine_similarity(h[src], h[dst])``;
* ``edge_dot`` forward + backward (the dot ``EdgeScorer``): one SDDMM and two
  CSR products, against ``(h[dst] * h[src]).sum(-1)`` under autograd.

One configuration per process (peak resident memory), several rounds,
alternated.

    python benchmarks/edge_products.py                      # 200k nodes, 4M edges, 128 channels
    python benchmarks/edge_products.py --edges 1000000 --channels 64 --rounds 5

Writes ``results/edge_products.json`` and prints each ratio to its gathered form.
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

# method: its baseline
METHODS = {"gathered_cosine": "gathered_cosine", "edge_cosine": "gathered_cosine",
           "gathered_dot": "gathered_dot", "edge_dot": "gathered_dot"}


def _one(method: str, nodes: int, edges: int, channels: int, threads: int) -> dict:
    import torch
    import torch.nn.functional as F
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from graphsparse.graph import edge_cosine, edge_dot
    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    h = torch.randn(nodes, channels, generator=g)
    ei = torch.randint(0, nodes, (2, edges), generator=g)
    ei = ei[:, torch.argsort(ei[0])]                # coalesced order, as GatedAdjacency stores
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    if method == "gathered_cosine":
        F.cosine_similarity(h[ei[0]], h[ei[1]], dim=-1)
    elif method == "edge_cosine":
        edge_cosine(h, ei)                          # includes building the CSR pattern
    else:
        h.requires_grad_()
        s = (edge_dot(h, h, ei) if method == "edge_dot"
             else (h[ei[1]] * h[ei[0]]).sum(-1))
        s.square().sum().backward()
    seconds = time.perf_counter() - t0
    extra = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base
    return dict(seconds=seconds, extra_peak_mib=extra)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=200_000)
    parser.add_argument("--edges", type=int, default=4_000_000)
    parser.add_argument("--channels", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default="results/edge_products.json")
    parser.add_argument("--child", choices=list(METHODS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_one(args.child, args.nodes, args.edges, args.channels, args.threads)))
        return {}
    runs = {m: [] for m in METHODS}
    for _ in range(args.rounds):
        for m in METHODS:       # alternated, so that drifts of the machine hit both
            cmd = [sys.executable, __file__, "--child", m, "--nodes", str(args.nodes),
                   "--edges", str(args.edges), "--channels", str(args.channels),
                   "--threads", str(args.threads)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            runs[m].append(json.loads(out.strip().splitlines()[-1]))
    summary = {}
    for m in METHODS:
        secs = [r["seconds"] for r in runs[m]]
        mem = [r["extra_peak_mib"] for r in runs[m]]
        summary[m] = dict(seconds=statistics.median(secs), seconds_min=min(secs),
                          seconds_max=max(secs), extra_peak_mib=statistics.median(mem),
                          runs=runs[m])
    print(f"{args.nodes:,} nodes, {args.edges:,} edges, {args.channels} channels, "
          f"{args.threads} thread(s), {args.rounds} rounds (median [min, max])")
    for m, s in summary.items():
        ref = summary[METHODS[m]]
        print(f"{m:16s} {s['seconds']:7.2f} s [{s['seconds_min']:.2f}, {s['seconds_max']:.2f}]"
              f"  x{s['seconds'] / ref['seconds']:.3f}   {s['extra_peak_mib']:8.0f} MiB"
              f"  x{s['extra_peak_mib'] / max(ref['extra_peak_mib'], 1e-9):.3f}"
              f"  (vs {METHODS[m]})")
    result = dict(settings=vars(args), results=summary)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
