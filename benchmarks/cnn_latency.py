"""CPU inference latency of compacted CNNs next to their FLOPs and parameters.

For every model: the plain network (ungated, same architecture), the gated one
with a fraction of its components dead (seeded, or the gate values of a
trained run from ``--gates results.json``) and its compaction. Reported per
batch size (1 and 128) and thread count (1 and all): the median eval-mode
forward time over ``--rounds`` rounds, with its spread (interquartile range and
min-max), the models timed interleaved round by round (so a load change on a
shared machine hits all alike), and the ratios

* ``speedup`` = plain time / compacted time,
* ``flop_reduction`` = plain FLOPs / compacted FLOPs,
* ``efficiency`` = speedup / flop_reduction (1.0: the FLOP saving is realized).

    python benchmarks/cnn_latency.py                          # ResNet-20, ResNeXt-29, DenseNet-BC-40
    python benchmarks/cnn_latency.py --models resnext --dead 0.5 --rounds 20
    python benchmarks/cnn_latency.py --torchvision --image-size 64   # + resnet18, resnext50, densenet121
    python benchmarks/cnn_latency.py --models resnext --gates results/resnext/results.json
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from typing import Callable, Dict, List, Tuple

import torch
from torch import nn

from graphsparse.cnn import DenseNet, ResNet, ResNeXt, compact, count_flops, count_params

#: library CIFAR models, (gated, plain) builders
CIFAR = {
    "resnet": lambda g: ResNet(20, gated=g),
    "resnext": lambda g: ResNeXt(29, cardinality=8, width=4, out_channels=(64, 128, 256),
                                 stem_channels=32, gated=g),
    "densenet": lambda g: DenseNet(40, growth_rate=12, gated=g),
}
TORCHVISION = ("resnet18", "resnext50_32x4d", "densenet121")


@torch.no_grad()
def kill(gated: nn.Module, fraction: float, seed: int) -> None:
    """Makes about ``fraction`` of the gate components exactly zero (random,
    seeded; at least one component of every group survives) and randomizes
    the others, so that the folded gate values are not all 1/n."""
    g = torch.Generator().manual_seed(seed)
    gate = gated.gate
    alpha = gate.alpha.view(-1)
    alpha.copy_(torch.rand(alpha.shape, generator=g) * 0.4 - 0.2)
    index = (gate.index if gate.index is not None else
             torch.arange(gate.num_groups).repeat_interleave(gate.num_components))
    dead = torch.rand(alpha.shape, generator=g) < fraction
    for grp in range(gate.num_groups):           # keep the largest of each group alive
        members = (index == grp).nonzero().flatten()
        dead[members[alpha[members].argmax()]] = False
    alpha[dead] = -30.0


@torch.no_grad()
def load_gates(gated: nn.Module, path: str) -> None:
    """Sets alpha so that the gate reproduces the zeros of a trained run's
    ``gate_values`` (first seed of ``results.json``)."""
    res = json.loads(open(path).read())
    values = torch.tensor(res["runs"]["gated"][0]["gate_values"]).view(-1)
    values = values[~torch.isnan(values)]
    alpha = gated.gate.alpha.view(-1)
    if values.numel() != alpha.numel():
        raise ValueError(f"'--gates' {path} has {values.numel()} gate values, the model "
                         f"{alpha.numel()}: pass the model settings of that run")
    alpha.copy_(torch.where(values > 0, torch.log(values.clamp_min(1e-6)), torch.full_like(values, -30.0)))


def build(name: str, args) -> Tuple[nn.Module, nn.Module, int]:
    """(plain, gated with dead components) and the input size."""
    if name in CIFAR:
        plain, gated = CIFAR[name](False), CIFAR[name](True)
        gated.load_state_dict(plain.state_dict(), strict=False)
        size = 32
    else:
        import torchvision  # noqa: F401  (optional)
        from graphsparse.cnn.torchvision import gate_torchvision
        torch.manual_seed(args.seed)
        plain = getattr(torchvision.models, name)(weights=None, num_classes=10)
        gated = gate_torchvision(plain)
        size = args.image_size
    if args.gates:
        load_gates(gated, args.gates)
    else:
        kill(gated, args.dead, args.seed)
    return plain.eval(), gated.eval(), size


def _time(fns: Dict[str, Callable[[], object]], rounds: int, warmup: int) -> Dict[str, List[float]]:
    times = {k: [] for k in fns}
    for r in range(warmup + rounds):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            if r >= warmup:
                times[k].append(time.perf_counter() - t0)
    return times


def _stats(v: List[float]) -> dict:
    q = statistics.quantiles(v, n=4) if len(v) > 1 else [v[0]] * 3
    return {"median_ms": 1e3 * statistics.median(v), "iqr_ms": 1e3 * (q[2] - q[0]),
            "min_ms": 1e3 * min(v), "max_ms": 1e3 * max(v)}


def measure(name: str, args) -> dict:
    plain, gated, size = build(name, args)
    small = compact(gated).eval()
    probe = torch.randn(1, 3, size, size)
    with torch.no_grad():
        gap = float((small(probe) - gated(probe)).abs().max())
    flops = {k: count_flops(m, probe) for k, m in
             (("plain", plain), ("gated", gated), ("compact", small))}
    out = {"model": name, "image_size": size, "max_abs_diff": gap,
           "params": {"plain": count_params(plain), "compact": count_params(small)},
           "flops_per_image": flops, "flop_reduction": flops["plain"] / flops["compact"],
           "latency": []}
    for threads in args.threads:
        torch.set_num_threads(threads)
        for batch in args.batches:
            x = torch.randn(batch, 3, size, size)

            def run(m, x=x):
                def fn():
                    with torch.inference_mode():
                        m(x)
                return fn
            t = _time({"plain": run(plain), "gated": run(gated), "compact": run(small)},
                      args.rounds, args.warmup)
            row = {"threads": threads, "batch": batch, **{k: _stats(v) for k, v in t.items()}}
            row["speedup"] = statistics.median(t["plain"]) / statistics.median(t["compact"])
            row["speedup_vs_gated"] = statistics.median(t["gated"]) / statistics.median(t["compact"])
            # per-round ratio spread (rounds are interleaved, so each is a fair pair)
            ratios = [p / c for p, c in zip(t["plain"], t["compact"])]
            row["speedup_min_max"] = [min(ratios), max(ratios)]
            row["efficiency"] = row["speedup"] / out["flop_reduction"]
            out["latency"].append(row)
            print(f"{name:<16} {threads} thr  batch {batch:>3}  plain "
                  f"{row['plain']['median_ms']:8.2f} ms (IQR {row['plain']['iqr_ms']:.2f})  "
                  f"compact {row['compact']['median_ms']:8.2f} ms (IQR "
                  f"{row['compact']['iqr_ms']:.2f})  speedup x{row['speedup']:.2f} "
                  f"[{ratios and min(ratios):.2f}, {max(ratios):.2f}]  FLOPs /"
                  f"{out['flop_reduction']:.2f}  efficiency {row['efficiency']:.2f}", flush=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", nargs="+", default=list(CIFAR), choices=list(CIFAR) + list(TORCHVISION))
    p.add_argument("--torchvision", action="store_true", help=f"also {', '.join(TORCHVISION)}")
    p.add_argument("--dead", type=float, default=0.4, help="fraction of gate components killed")
    p.add_argument("--gates", default=None, help="results.json of a trained run (its gate zeros)")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 128])
    p.add_argument("--threads", type=int, nargs="+", default=[1, os.cpu_count() or 1])
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--image-size", type=int, default=64, help="input size of torchvision models")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="write the results as JSON")
    args = p.parse_args()
    if not 0 <= args.dead < 1:
        p.error("'--dead' must be in [0, 1)")
    if args.rounds < 2:
        p.error("'--rounds' must be at least 2 (a spread needs two)")
    names = list(args.models) + (list(TORCHVISION) if args.torchvision else [])
    results = [measure(n, args) for n in names]
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"settings": vars(args), "torch": torch.__version__, "results": results},
                      f, indent=1)


if __name__ == "__main__":
    main()
