"""The CIFAR experiment behind ``examples/cifar_*.py``: train the gated and the
plain network with the same settings over several seeds, compact the gated
one, and report accuracy, learned structure, parameters, FLOPs, inference
speed and training step time (printed, and written as JSON and a PNG)."""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch

from ..data.cifar import CIFAR_MEAN, CIFAR_STD, load_cifar, normalize
from ..utils import seed_everything
from ._gating import GatedNetwork
from .compact import compact
from .profile import compare_models, count_flops, count_params
from .train import (
    TrainingInterrupted,
    fit,
    plot_gates,
    setup_distributed,
    step_time_ratio,
    unwrap,
    wrap_model,
)

BuildFn = Callable[[dict, bool], GatedNetwork]

#: Settings shared by the examples; each example adds its model's settings.
DEFAULT_HP = dict(
    dataset="cifar10",     # or "cifar100"
    train_subset=0,        # use only the first N training images (0: all)
    epochs=200,
    batch_size=128,        # global batch (images per step), split over processes
    lr=0.1,                # peak learning rate of the weights (SGD, Nesterov)
    gate_lr=0.1,           # learning rate of the gate parameters (no weight decay)
    freeze_beta=False,     # keep the thresholds at init: no group dies entirely
    momentum=0.9,
    weight_decay=5e-4,     # on the weights only
    warmup_epochs=2,       # linear warm-up, then cosine decay to zero
    lambdas=[0.1, 0.1, 0.1],  # penalty weight per stage
    p=0.5,                 # exponent of the p-norm penalty
    seeds=[0, 1, 2],
    amp=True,              # bf16 autocast on CUDA
    sync_bn=False,         # SyncBatchNorm under torchrun (CUDA)
    bench_batch=256,       # images per batch when timing and counting FLOPs
    bench_repeats=20,      # timed repetitions (interleaved)
)


def parse_args(name: str, hp: dict, quick: dict, argv: Optional[Sequence[str]] = None) -> dict:
    """Command line over the hyperparameter dict ``hp``: every key becomes a
    flag (``--batch-size 128``); ``--quick`` first applies the CPU settings
    ``quick``; ``--lambdas`` takes one value or one per stage."""
    parser = argparse.ArgumentParser(description=f"Gated vs plain {name} on CIFAR.")
    parser.add_argument("--quick", action="store_true", help=f"CPU-sized run: {quick}")
    parser.add_argument("--out", default=f"results/{name.lower()}", help="output folder")
    parser.add_argument("--root", default=None, help="data root (default: GRAPHSPARSE_DATA)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if any)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--resume", action="store_true",
                        help="continue each run from <out>/checkpoints (written every "
                             "--checkpoint-every epochs and on Ctrl-C)")
    parser.add_argument("--checkpoint-every", type=int, default=1, metavar="EPOCHS")
    for key, value in hp.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            parser.add_argument(flag, type=lambda s: s.lower() in ("1", "true", "yes"),
                                default=None, metavar="BOOL")
        elif isinstance(value, (list, tuple)):
            parser.add_argument(flag, type=type(value[0]), nargs="+", default=None)
        else:
            parser.add_argument(flag, type=type(value), default=None)
    args = vars(parser.parse_args(argv))
    out = dict(hp)
    if args.pop("quick"):
        out.update(quick)
    for key in hp:
        if args.get(key) is not None:
            out[key] = args[key]
    out.update({k: args[k] for k in ("out", "root", "device", "threads")
                if args[k] is not None or k not in out})
    if args["checkpoint_every"] < 1:
        parser.error("'--checkpoint-every' must be at least 1")
    out["resume"], out["checkpoint_every"] = args["resume"], args["checkpoint_every"]
    return out


def _summary(values):
    return {"mean": statistics.fmean(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0, "runs": values}


def run_experiment(name: str, build: BuildFn, hp: dict, structure_key: str) -> dict:
    """Runs the experiment described by ``hp`` (see the example scripts) and
    returns the results written to ``<out>/results.json``."""
    if hp.get("threads"):
        torch.set_num_threads(hp["threads"])
    env = setup_distributed(hp.get("device"))
    train = load_cifar(hp["dataset"], hp["root"], train=True, device=env.device)
    test = load_cifar(hp["dataset"], hp["root"], train=False, device=env.device)
    if hp.get("train_subset"):
        train = (train[0][:hp["train_subset"]], train[1][:hp["train_subset"]])
    out = Path(hp["out"])
    runs: Dict[str, List[Dict[str, Any]]] = {"gated": [], "plain": []}
    for seed in hp["seeds"]:
        models = {}
        for kind in ("gated", "plain"):
            seed_everything(seed)
            model = build(hp, kind == "gated").to(env.device)
            ddp = wrap_model(model, env, hp.get("sync_bn", False))
            ckpt = out / "checkpoints" / f"{kind}_seed{seed}.pt"
            if env.main:
                ckpt.parent.mkdir(parents=True, exist_ok=True)
            try:
                res = fit(ddp, train, test, hp, env, seed, desc=f"{name} {kind} seed {seed}",
                          checkpoint=ckpt, checkpoint_every=hp.get("checkpoint_every", 1),
                          resume=hp.get("resume", False))
            except TrainingInterrupted as e:      # Ctrl-C: one line, no traceback
                if env.main:
                    print(f"\n{e}", file=sys.stderr)
                raise SystemExit(130) from None
            if kind == "gated":
                res["structure"] = model.structure()
            models[kind] = unwrap(ddp)
            runs[kind].append(res)
            if env.main:
                print(f"[{name}] seed {seed} {kind}: test acc {res['test_acc']:.2f}%"
                      + (f", {structure_key}: {res['structure'][structure_key]}"
                         if kind == "gated" else ""), flush=True)
        if env.main:
            runs["gated"][-1].update(_profile(models, build, train, hp, out, seed))
        env.barrier()
    if not env.main:
        return {}
    results = {"model": name, "hyperparameters": hp,
               "test_acc_gated": _summary([r["test_acc"] for r in runs["gated"]]),
               "test_acc_plain": _summary([r["test_acc"] for r in runs["plain"]]),
               "train_step_ratio_in_training": _summary(
                   [g["step_time_s"] / p["step_time_s"]
                    for g, p in zip(runs["gated"], runs["plain"], strict=True)]),
               "train_step_ratio_at_init": _summary(
                   [g["step_time"]["at_init"]["ratio"] for g in runs["gated"]]),
               "train_step_ratio_trained": _summary(
                   [g["step_time"]["trained"]["ratio"] for g in runs["gated"]]),
               "inference_speedup_compacted": _summary(
                   [g["compaction"]["speedup"] for g in runs["gated"]]),
               "runs": runs}
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    _print(results, structure_key)
    return results


def _profile(models: dict, build: BuildFn, train, hp: dict, out: Path, seed: int) -> dict:
    """Compaction, parameters, FLOPs, inference speed, and the training step
    time gated/plain: at initialization (every gate alive: the cost of gating)
    and after training (dead ResNet blocks are skipped)."""
    gated, plain = models["gated"], models["plain"]
    stats = (CIFAR_MEAN[hp["dataset"]], CIFAR_STD[hp["dataset"]])
    x = normalize(train[0][:hp["bench_batch"]], *stats)
    y = train[1][:hp["bench_batch"]]
    gated.eval()
    small = compact(gated).eval()
    assert isinstance(small, GatedNetwork)              # a ResNet, ResNeXt or DenseNet
    with torch.no_grad():
        diff = (gated(x) - small(x)).abs().max().item()
    report = compare_models(gated, small, x, repeats=hp["bench_repeats"])
    report["max_abs_diff"] = diff
    report["params_plain"], report["flops_plain"] = count_params(plain), count_flops(plain, x)
    report["structure_after"] = small.structure()
    device = x.device
    steps = {"at_init": step_time_ratio(build(hp, True).to(device), build(hp, False).to(device),
                                        x, y, hp, repeats=hp["bench_repeats"]),
             "trained": step_time_ratio(gated, plain, x, y, hp, repeats=hp["bench_repeats"])}
    out.mkdir(parents=True, exist_ok=True)
    png = out / f"gates_seed{seed}.png"
    plot_gates(gated, str(png), f"{gated.__class__.__name__} gate values (seed {seed})")
    return {"compaction": report, "step_time": steps, "gates_png": str(png),
            "gate_values": gated.gate_matrix().tolist()}


def _print(results: dict, structure_key: str) -> None:
    g, p = results["test_acc_gated"], results["test_acc_plain"]
    print(f"\n== {results['model']} ({len(g['runs'])} seed(s)) ==")
    print(f"test accuracy  gated {g['mean']:.2f} ± {g['std']:.2f}   "
          f"plain {p['mean']:.2f} ± {p['std']:.2f}")
    for i, run in enumerate(results["runs"]["gated"]):
        c = run["compaction"]
        print(f"seed run {i}: {structure_key} {run['structure'][structure_key]}")
        print(f"  params {c['params_before']:,} -> {c['params_after']:,} (plain "
              f"{c['params_plain']:,})   FLOPs per batch of {c['batch_size']} "
              f"{c['flops_before']:,} -> {c['flops_after']:,} (plain {c['flops_plain']:,})   "
              f"inference speedup x{c['speedup']:.2f}   max |diff| {c['max_abs_diff']:.1e}")
        st, plain = run["step_time"], results["runs"]["plain"][i]
        print(f"  training step time gated/plain: x{st['at_init']['ratio']:.3f} at init, "
              f"x{st['trained']['ratio']:.3f} trained (interleaved), "
              f"x{run['step_time_s'] / plain['step_time_s']:.3f} (medians during training)")
        print(f"  gate values: {run['gates_png']}")
