"""SGL0 on a plain CIFAR ResNet (``graphsparse.cnn.ResNet(gated=False)``)
against group lasso and no regularization, then channel compaction.

Paper setting (Bui et al. 2019, section 3.2, on WRN-28-10): SGD lr 0.1 decayed
0.2x every 60 epochs, lambda = alpha / N, beta = 25 alpha / N growing 1.25x
every 20 epochs, 200 epochs. Here: ResNet-20, momentum 0.9, weight decay 5e-4
(not stated in the paper), schedules scaled to ``--epochs`` (every 3/10 and
1/10 of the run). Batch norms that follow a convolution join its channel groups
(``norms=True``), so a zeroed channel is exactly zero after its norm and the
compaction can remove it; channels tied by residual additions are kept.

    GRAPHSPARSE_DATA=/work/shared/datasets python examples/cifar_sgl0.py --quick

writes ``results.json``, ``sparsity.png`` (per layer) and ``compaction.png``
(parameters and FLOPs before / after compaction, channels kept per layer).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Optional

import torch

from graphsparse.cnn.profile import compare_models
from graphsparse.cnn.resnet import ResNet
from graphsparse.data.cifar import (CIFAR_MEAN, CIFAR_STD, load_cifar, normalize,
                                    random_crop_flip)
from graphsparse.regularizers.experiment import (add_common_arguments, compacted_copy,
                                                 error_rate, finalize, fit_regularized,
                                                 format_table, make_regularizer,
                                                 plot_layer_sparsity, TrainingInterrupted)
from graphsparse.utils import seed_everything

HP = dict(
    dataset="cifar10",
    depth=20, widths=(16, 32, 64),  # plain ResNet-20
    epochs=200,                 # paper: 200
    batch_size=128,             # images per step
    lr=0.1, momentum=0.9, weight_decay=5e-4,
    lr_decay=0.2,               # every 3/10 of the run (paper: 60 of 200 epochs)
    alpha=0.1,                  # lambda = alpha per sample (paper sweeps 0.01 .. 0.5)
    beta_factor=25.0,           # beta = 25 alpha per sample
    beta_growth=1.25,           # every 1/10 of the run (paper: 20 of 200 epochs)
    finalize="threshold",       # SGL0: the paper's 1e-5 threshold on W ("v": W := V)
    norms=True,                 # batch norms join their convolution's channel groups
    methods=("none", "group_lasso", "sgl0"),
    seed=0,
    train_limit=None, test_limit=None,  # image subsets (the --quick mode)
)
QUICK = dict(epochs=2, batch_size=64, train_limit=512, test_limit=512)


def run(method: str, hp: dict, train, test, device, checkpoint: Optional[Path] = None,
        resume: bool = False) -> dict:
    seed_everything(hp["seed"])
    (x, y), stats = train, (CIFAR_MEAN[hp["dataset"]], CIFAR_STD[hp["dataset"]])
    n = len(x)
    model = ResNet(hp["depth"], num_classes=10 if hp["dataset"] == "cifar10" else 100,
                   widths=hp["widths"], gated=False).to(device)
    every = max(1, round(hp["epochs"] / 10))
    reg = make_regularizer(method, model, lam=hp["alpha"],
                           beta=hp["beta_factor"] * hp["alpha"], beta_growth=hp["beta_growth"],
                           grow_every=every, num_samples=n, norms=hp["norms"])
    opt = torch.optim.SGD(model.parameters(), lr=hp["lr"], momentum=hp["momentum"],
                          weight_decay=hp["weight_decay"])
    sched = torch.optim.lr_scheduler.StepLR(opt, max(1, round(0.3 * hp["epochs"])), hp["lr_decay"])
    gen = torch.Generator().manual_seed(hp["seed"])
    def batches():
        perm = torch.randperm(n, generator=gen).to(device)
        return ((normalize(random_crop_flip(x[idx], generator=gen), *stats), y[idx])
                for idx in perm[:n - n % hp["batch_size"]].split(hp["batch_size"]))

    t0 = time.perf_counter()
    fit_regularized(model, reg, opt, batches, hp["epochs"], scheduler=sched, generator=gen,
                    checkpoint=checkpoint, resume=resume,
                    checkpoint_every=hp.get("checkpoint_every", 1),
                    on_epoch=lambda e, loss: print(f"  {method:<12} epoch {e:>3}  loss "
                                                   f"{loss:.3f}", flush=True))
    seconds = time.perf_counter() - t0
    err_raw = error_rate(model, *test, lambda t: normalize(t, *stats))
    report = finalize(model, reg, **({"mode": hp["finalize"]} if method == "sgl0" else {}))
    err = error_rate(model, *test, lambda t: normalize(t, *stats))
    probe = normalize(test[0][:64], *stats)
    small, compaction, gap = compacted_copy(model, probe)
    prof = compare_models(model, small, probe[:16], repeats=5)
    return dict(test_error=err, test_error_before_finalize=err_raw, train_seconds=seconds,
                weight_sparsity=report["total"]["weight_sparsity"],
                neuron_sparsity=report["total"]["neuron_sparsity"], layers=report["layers"],
                params=prof["params_before"], params_compact=prof["params_after"],
                flops=prof["flops_before"], flops_compact=prof["flops_after"],
                speedup_cpu=prof["speedup"],
                channels_compact={k: list(v) for k, v in compaction.channels.items()},
                compaction_skipped=len(compaction.skipped), compaction_max_output_change=gap)


def plot_compaction(results: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    methods = list(results)
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for j, key in enumerate(("params", "flops")):
        before = [results[m][key] for m in methods]
        after = [results[m][key + "_compact"] for m in methods]
        xs = range(len(methods))
        axes[0].bar([i + 0.2 * (2 * j - 1) for i in xs], [a / b for a, b in zip(after, before)],
                    0.4, label=key)
    axes[0].set_xticks(list(range(len(methods))), methods)
    axes[0].set_ylabel("after / before compaction")
    axes[0].legend()
    layers = list(results[methods[0]]["channels_compact"])
    width = 0.8 / len(methods)
    for j, m in enumerate(methods):
        kept = [results[m]["channels_compact"][layer][1] / results[m]["channels_compact"][layer][0]
                for layer in layers]
        axes[1].bar([i + j * width for i in range(len(layers))], kept, width, label=m)
    axes[1].set_xticks([i + 0.4 - width / 2 for i in range(len(layers))],
                       [layer.replace("stages.", "s") for layer in layers], rotation=60, fontsize=7)
    axes[1].set_ylabel("channels kept (fraction)")
    axes[1].legend(fontsize=8)
    fig.suptitle("ResNet channel compaction (compactable layers: first conv of each block)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="CPU smoke run: " + str(QUICK))
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--alpha", type=float, default=HP["alpha"])
    p.add_argument("--beta-factor", type=float, default=HP["beta_factor"])
    p.add_argument("--beta-growth", type=float, default=HP["beta_growth"])
    p.add_argument("--finalize", choices=("v", "threshold"), default=HP["finalize"],
                   help="SGL0's exact zeros: W := V, or the paper's 1e-5 threshold on W")
    p.add_argument("--checkpoint-every", type=int, default=1,
                   help="epochs between checkpoints (<out>/checkpoints/<method>.pt)")
    p.add_argument("--resume", action="store_true",
                   help="continue every method from its checkpoint in <out>/checkpoints")
    add_common_arguments(p, HP, "results/cifar_sgl0")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    hp = dict(HP, **(QUICK if args.quick else {}))
    hp.update(alpha=args.alpha, beta_factor=args.beta_factor, beta_growth=args.beta_growth,
              finalize=args.finalize, methods=tuple(args.methods), seed=args.seed)
    if args.epochs:
        hp["epochs"] = args.epochs
    if args.checkpoint_every < 1:
        p.error("'--checkpoint-every' must be >= 1")
    hp["checkpoint_every"] = args.checkpoint_every
    device = torch.device(args.device)
    xtr, ytr = load_cifar(hp["dataset"], args.root, True, device)
    xte, yte = load_cifar(hp["dataset"], args.root, False, device)
    xtr, ytr = xtr[:hp["train_limit"]], ytr[:hp["train_limit"]]
    xte, yte = xte[:hp["test_limit"]], yte[:hp["test_limit"]]
    hp["num_train"], hp["num_test"] = len(ytr), len(yte)
    print(f"{len(ytr)} train / {len(yte)} test images on {device}")
    ckdir = Path(args.out) / "checkpoints"
    ckdir.mkdir(parents=True, exist_ok=True)
    try:
        results = {m: run(m, hp, (xtr, ytr), (xte, yte), device, ckdir / f"{m}.pt",
                          args.resume) for m in hp["methods"]}
    except TrainingInterrupted as e:
        print(e, file=sys.stderr)
        sys.exit(130)
    print("\n" + format_table(results))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps({"settings": hp, "results": results}, indent=1))
    plot_layer_sparsity(results, out / "sparsity.png", "ResNet-20 on CIFAR-10: per-layer sparsity")
    plot_compaction(results, out / "compaction.png")
    print(f"wrote {out}/results.json, sparsity.png, compaction.png")


if __name__ == "__main__":
    main()
