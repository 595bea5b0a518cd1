"""Cost of a training step of the gated GCN against PyG's GCNConv.

One step is ``zero_grad``, forward, cross-entropy (plus the adjacency penalty
for the gated model) and backward, on a synthetic random graph. Reported:
median step time after warm-up and the peak memory of a step above the
memory held before it, and their ratios to the GCNConv baseline (2 layers,
fixed graph, ``cached=False``) measured in the same run.

Times come from one subprocess in which the models take turns step by step
(fair under a varying machine load); memory from one subprocess per model.
Memory: on CUDA ``torch.cuda.max_memory_allocated``; on CPU the peak resident
set size of the step (``VmHWM`` after resetting it through
``/proc/self/clear_refs``, minus ``VmRSS`` before the step), with glibc's mmap
threshold fixed so that freed tensors go back to the system (that setting
slows allocation, so times come from a run without it).

    python benchmarks/adjacency.py                       # 100k nodes, 1M edges
    python benchmarks/adjacency.py --nodes 20000 --edges 200000 --threads 1
    python benchmarks/adjacency.py --device cuda --out adjacency.json
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

MODELS = ("gcnconv", "row", "sym", "sinkhorn", "balanced")
TARGETS = {"time_cpu": 2.5, "time_cuda": 1.5, "memory": 3.0}  # ratio to GCNConv for sinkhorn


def _proc_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _build(args, models):
    """One training step per model, all on the same synthetic graph."""
    import torch
    import torch.nn.functional as F
    from torch_geometric.nn import GCNConv

    from graphsparse.graph import GatedAdjacency, GatedGCN

    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    n, e = args.nodes, args.edges
    edge_index = torch.randint(0, n, (2, e), device=device)
    x = torch.randn(n, args.features, device=device)
    y = torch.randint(0, args.classes, (n,), device=device)

    class GCN(torch.nn.Module):      # the baseline: PyG's GCNConv, fixed graph
        def __init__(self):
            super().__init__()
            self.conv1 = GCNConv(args.features, args.hidden, cached=False)
            self.conv2 = GCNConv(args.hidden, args.classes, cached=False)

        def forward(self, x):
            x = F.dropout(x, 0.5, self.training)
            x = self.conv1(x, edge_index).relu()
            x = F.dropout(x, 0.5, self.training)
            return self.conv2(x, edge_index)

    def make_step(name):
        if name == "gcnconv":
            model = GCN().to(device)
        else:
            adj = GatedAdjacency(edge_index, n, normalization=name, num_iters=args.iters)
            model = GatedGCN(args.features, args.hidden, args.classes, adjacency=adj).to(device)

        def step():
            model.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x), y)
            if name != "gcnconv" and args.penalty:
                loss = loss + args.lam * model.penalty(0.5)
            loss.backward()
        return step

    return torch, device, {name: make_step(name) for name in models}


def _measure(args) -> dict:
    models = args.models.split(",")
    torch, device, steps = _build(args, models)
    cuda = device.type == "cuda"

    def sync():
        if cuda:
            torch.cuda.synchronize()

    for _ in range(args.warmup):
        for step in steps.values():
            step()
    if args.child == "time":       # the models take turns, so that load is shared fairly
        times = {name: [] for name in steps}
        for _ in range(args.repeats):
            for name, step in steps.items():
                sync()
                start = time.perf_counter()
                step()
                sync()
                times[name].append(time.perf_counter() - start)
        return {name: {"time_s": statistics.median(t), "times_s": t} for name, t in times.items()}
    (step,) = steps.values()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        step()
        sync()
        peak = torch.cuda.max_memory_allocated() - before
    else:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        before = _proc_kb("VmRSS")
        step()
        peak = (_proc_kb("VmHWM") - before) * 1024
    return {models[0]: {"peak_bytes": peak}}


def _run_child(args, models: str, what: str) -> dict:
    cmd = [sys.executable, __file__, "--child", what, "--models", models]
    for key in ("nodes", "edges", "features", "hidden", "classes", "iters", "device",
                "repeats", "warmup", "seed", "threads", "lam"):
        cmd += [f"--{key}", str(getattr(args, key))]
    if not args.penalty:
        cmd.append("--no-penalty")
    env = dict(os.environ)
    if what == "memory":
        env.update(MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0")
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=100_000)
    parser.add_argument("--edges", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--classes", type=int, default=16)
    parser.add_argument("--iters", type=int, default=10, help="Sinkhorn iterations")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5, help="timed steps (median)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    parser.add_argument("--lam", type=float, default=1e-4, help="penalty weight")
    parser.add_argument("--no-penalty", dest="penalty", action="store_false",
                        help="time the gated step without the penalty term")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--out", default=None, help="write the results as JSON")
    parser.add_argument("--child", choices=("time", "memory"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        if args.threads > 0:
            import torch
            torch.set_num_threads(args.threads)
        print(json.dumps(_measure(args)))
        return

    models = [m for m in args.models.split(",") if m]
    if "gcnconv" not in models:
        models.insert(0, "gcnconv")
    results = _run_child(args, ",".join(models), "time")
    for m in models:
        results[m].update(_run_child(args, m, "memory")[m])
    base = results["gcnconv"]
    print(f"nodes={args.nodes} edges={args.edges} features={args.features} "
          f"hidden={args.hidden} iters={args.iters} device={args.device} "
          f"penalty={args.penalty}")
    print(f"{'model':<10} {'step [ms]':>10} {'x GCNConv':>10} {'peak [MiB]':>11} {'x GCNConv':>10}")
    for name, r in results.items():
        r["time_ratio"] = r["time_s"] / base["time_s"]
        r["memory_ratio"] = r["peak_bytes"] / max(base["peak_bytes"], 1)
        print(f"{name:<10} {1e3 * r['time_s']:>10.1f} {r['time_ratio']:>10.2f} "
              f"{r['peak_bytes'] / 2**20:>11.1f} {r['memory_ratio']:>10.2f}")
    if "sinkhorn" in results:
        r = results["sinkhorn"]
        kind = "cuda" if args.device.startswith("cuda") else "cpu"
        print(f"sinkhorn vs targets: time x{r['time_ratio']:.2f} (<= {TARGETS['time_' + kind]}), "
              f"memory x{r['memory_ratio']:.2f} (<= {TARGETS['memory']})")
    if args.out:
        settings = {k: v for k, v in vars(args).items() if k != "child"}
        with open(args.out, "w") as f:
            json.dump({"settings": settings, "targets": TARGETS, "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
