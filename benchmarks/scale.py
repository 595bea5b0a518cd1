"""Memory and time of one full-batch training step at OGB sizes.

Synthetic power-law graphs (a seeded Chung-Lu generator, O(E) memory) from
ogbn-arxiv size (169,343 nodes, 2.3M directed edges, 128 features) to
ogbn-products size (2,449,029 nodes, 124M directed edges, 100 features);
3 layers, hidden 256, dropout 0.5, Adam. One training step (zero_grad,
forward, cross-entropy on every node, plus the adjacency penalty for the
gated models, backward, optimizer step) of

* ``gated_sinkhorn``: ``GatedAdjacency`` (groups="both", Sinkhorn, 10
  iterations) + ``GatedGCN``;
* ``gated_row``: the same with ``normalization="row"``;
* ``gcnconv``: PyG's ``GCNConv`` on the edge list (``cached=False``);
* ``sparse_gcn``: a fixed-graph GCN, :math:`D^{-1/2}(A+I)D^{-1/2}`
  computed once, propagated by graphsparse's sparse product (the baseline
  of the ratios; what OGB's own GCN does with a precomputed SparseTensor):
  ``GatedGCN`` without an adjacency, called with these fixed weights, so
  that both models run the same layers (sparse products, the fused
  ``relu_dropout``) and the ratios measure what learning the graph costs.

One configuration per subprocess (the graph is generated once per size in a
subprocess of its own and loaded from a temporary file). Memory: the peak
resident set size of the worker (``resource.getrusage``), minus the RSS
once the graph and features are loaded, so it counts the model, its
preprocessing (e.g. coalescing the candidates) and the steps; divided by
the directed edges and by the nodes. Time: median step over ``--repeats``
steps after one warm-up step, with the min-max spread, and the median
process CPU time (less sensitive than wall time to other processes on a
shared machine; equal to it on an idle one with ``--threads 1``); ratios to
``sparse_gcn`` of the same size. Configurations that would not fit in
``--max-gb`` (estimated from per-edge costs) are skipped with that reason.

    python benchmarks/scale.py --sizes arxiv --threads 1 --repeats 3
    python benchmarks/scale.py --sizes arxiv,mid --models gated_sinkhorn,sparse_gcn
    python benchmarks/scale.py --sizes products --device cuda     # a big machine
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# name: (nodes, directed edges, features, classes)
SIZES = {
    "tiny": (20_000, 200_000, 64, 16),
    "dense": (20_000, 2_000_000, 128, 40),           # 100 edges per node: per-edge costs
    "arxiv": (169_343, 2_315_598, 128, 40),
    "mid": (250_000, 12_500_000, 100, 47),            # products' 50 edges per node
    "products": (2_449_029, 123_718_280, 100, 47),
}
MODELS = ("sparse_gcn", "gated_sinkhorn", "gated_row", "gcnconv")
BASELINE = "sparse_gcn"
TARGETS = {"memory": 1.2, "time": 1.5}   # gated_sinkhorn / sparse_gcn (issue 14)
# Rough peak bytes per directed edge (hidden 256) and [N, hidden] float
# tensors per node, for the skip decision only (fitted to the 12.3M-edge run).
EST_BYTES_PER_EDGE = {"sparse_gcn": 40, "gated_sinkhorn": 70, "gated_row": 65,
                      "gcnconv": 9 * 256 + 200}
EST_NODE_TENSORS = 5


def power_law_graph(num_nodes: int, num_edges: int, exponent: float = 2.5, seed: int = 0):
    """Undirected Chung-Lu graph with a power-law expected degree sequence
    (node weights :math:`(i + 1)^{-1/(\\gamma - 1)}`, randomly relabelled),
    ``num_edges // 2`` sampled pairs in both directions, self-loops and
    duplicates removed: about ``num_edges`` directed edges, coalesced. Memory
    :math:`O(E)`: endpoints are drawn by inverse-CDF sampling in chunks."""
    import torch
    from torch_geometric.utils import coalesce

    g = torch.Generator().manual_seed(seed)
    weight = torch.arange(1, num_nodes + 1, dtype=torch.float64).pow_(-1.0 / (exponent - 1.0))
    cdf = weight.cumsum_(0)
    cdf /= cdf[-1].clone()
    relabel = torch.randperm(num_nodes, generator=g)
    pairs = num_edges // 2
    ends = torch.empty(2, pairs, dtype=torch.long)
    chunk = 1 << 22
    for i in range(0, pairs, chunk):
        for side in range(2):
            u = torch.rand(min(chunk, pairs - i), generator=g, dtype=torch.float64)
            idx = torch.searchsorted(cdf, u).clamp_(max=num_nodes - 1)
            ends[side, i:i + idx.numel()] = relabel[idx]
    ends = ends[:, ends[0] != ends[1]]
    edge_index = torch.cat([ends, ends.flip(0)], 1)
    del ends
    return coalesce(edge_index, num_nodes=num_nodes)


def _rss_kb(field: str = "VmRSS") -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _generate(args) -> None:
    import torch
    n, e, f, c = SIZES[args.size]
    edge_index = power_law_graph(n, e, seed=args.seed)
    g = torch.Generator().manual_seed(args.seed + 1)
    x = torch.randn(n, f, generator=g)
    y = torch.randint(0, c, (n,), generator=g)
    torch.save({"edge_index": edge_index, "x": x, "y": y, "classes": c}, args.graph)
    deg = torch.bincount(edge_index[1], minlength=n)
    print(json.dumps({"nodes": n, "edges": edge_index.size(1), "features": f,
                      "max_degree": int(deg.max()), "mean_degree": float(deg.float().mean())}))


def _worker(args) -> dict:
    import torch
    import torch.nn.functional as F
    from torch_geometric.nn import GCNConv
    from torch_geometric.nn.conv.gcn_conv import gcn_norm

    from graphsparse.graph import GatedAdjacency, GatedGCN
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    data = torch.load(args.graph)
    edge_index, x, y = (data[k].to(device) for k in ("edge_index", "x", "y"))
    n, classes = x.size(0), data["classes"]
    del data
    cuda = device.type == "cuda"
    loaded_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    loaded_rss_kb = _rss_kb()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        loaded_cuda = torch.cuda.memory_allocated()
    hidden, layers = args.hidden, args.layers
    sizes = [x.size(1)] + [hidden] * (layers - 1) + [classes]
    model = args.model
    if model.startswith("gated"):
        norm = "sinkhorn" if model == "gated_sinkhorn" else "row"
        adj = GatedAdjacency(edge_index, n, normalization=norm, num_iters=args.iters)
        net = GatedGCN(x.size(1), hidden, classes, num_layers=layers, adjacency=adj).to(device)

        def loss_fn():
            return F.cross_entropy(net(x), y) + args.lam * net.penalty(0.5)
        num_edges = adj.num_edges
    elif model == "gcnconv":
        convs = torch.nn.ModuleList(GCNConv(a, b, cached=False)
                                    for a, b in zip(sizes[:-1], sizes[1:], strict=True))
        net = convs.to(device)
        num_edges = edge_index.size(1)

        def loss_fn():
            h = x
            for i, conv in enumerate(convs):
                h = F.dropout(h, 0.5, training=True)
                h = conv(h, edge_index)
                if i < layers - 1:
                    h = h.relu()
            return F.cross_entropy(h, y)
    else:
        graph = gcn_norm(edge_index, None, n, add_self_loops=True)
        net = GatedGCN(x.size(1), hidden, classes, num_layers=layers).to(device)
        num_edges = graph[0].size(1)

        def loss_fn():
            return F.cross_entropy(net(x, *graph), y)
    input_edges = int(edge_index.size(1))
    # The gated models and the fixed-graph GCN hold their own copy of the
    # graph (candidates with self-loops): the input is freed, as a user short
    # of memory would free it. Its bytes, measured as the drop in RSS, are
    # added back to the extra memory, which so stays the model's own.
    freed_kb = freed_cuda = 0
    if model != "gcnconv":
        before_kb = _rss_kb()
        before_cuda = torch.cuda.memory_allocated() if cuda else 0
        del edge_index
        freed_kb = max(before_kb - _rss_kb(), 0)
        freed_cuda = before_cuda - torch.cuda.memory_allocated() if cuda else 0
    opt = torch.optim.Adam(net.parameters(), lr=0.01)

    def step():
        opt.zero_grad(set_to_none=True)
        loss_fn().backward()
        opt.step()
        if cuda:
            torch.cuda.synchronize()

    times, cpu = [], []
    for i in range(args.repeats + 1):
        start, start_cpu = time.perf_counter(), time.process_time()
        step()
        if i > 0:                          # the first step is the warm-up
            times.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = {"model": model, "nodes": n, "edges": int(num_edges),
           "input_edges": input_edges,
           "time_s": statistics.median(times), "time_min_s": min(times),
           "time_max_s": max(times), "cpu_s": statistics.median(cpu),
           "peak_rss_mib": peak_kb / 1024,
           "loaded_rss_mib": loaded_rss_kb / 1024,
           "loaded_peak_mib": loaded_kb / 1024,
           "freed_input_mib": (freed_cuda / 2**20 if cuda else freed_kb / 1024)}
    # Peak over the RSS once the graph is loaded and every module imported
    # (plus the freed input: the model's own memory). peak_rss_mib is the
    # whole process: what has to fit in the machine.
    extra = (peak_kb - loaded_rss_kb + freed_kb) * 1024
    if cuda:
        extra = torch.cuda.max_memory_allocated() - loaded_cuda + freed_cuda
        out["cuda_peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
    out["extra_mib"] = extra / 2**20
    out["bytes_per_edge"] = extra / max(input_edges, 1)
    out["bytes_per_node"] = extra / n
    return out


def _run(cmd, env=None) -> dict:
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _available_gb() -> float:
    try:
        return _rss_kb_meminfo("MemAvailable") / 2**20
    except OSError:
        return float("inf")


def _rss_kb_meminfo(field: str) -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(field)


def _fit(results: dict, model: str, target: str) -> dict:
    """Least-squares fit of extra memory = a E + b N (and time = a E + b N)
    over the measured sizes, evaluated at ``target``: an estimate."""
    import numpy as np
    rows = [r[model] for r in results.values() if model in r and "time_s" in r[model]]
    if len(rows) < 2:
        return {}
    A = np.array([[r["input_edges"], r["nodes"]] for r in rows], dtype=float)
    n, e = SIZES[target][0], SIZES[target][1]
    est = {"model": model, "estimated": True, "nodes": n, "input_edges": e,
           "from_sizes": [k for k, r in results.items() if model in r and "time_s" in r[model]]}
    for key in ("extra_mib", "time_s", "cpu_s"):
        coef, *_ = np.linalg.lstsq(A, np.array([r[key] for r in rows]), rcond=None)
        est[key] = float(coef[0] * e + coef[1] * n)
    est["bytes_per_edge"] = est["extra_mib"] * 2**20 / e
    est["bytes_per_node"] = est["extra_mib"] * 2**20 / n
    return est


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="arxiv", help=f"comma list of {list(SIZES)}")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3, help="timed steps after one warm-up")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--iters", type=int, default=10, help="Sinkhorn iterations")
    parser.add_argument("--lam", type=float, default=1e-4, help="penalty weight")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-gb", type=float, default=None,
                        help="skip configurations estimated above it (default: 0.7 x available)")
    parser.add_argument("--estimate", default="",
                        help="comma list of sizes to extrapolate (a E + b N fit) when not run")
    parser.add_argument("--out", default="results/scale.json")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--generate", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--size", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--graph", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.generate:
        _generate(args)
        return
    if args.worker:
        print(json.dumps(_worker(args)))
        return

    sizes = [s for s in args.sizes.split(",") if s]
    models = [m for m in args.models.split(",") if m]
    for s in sizes + [s for s in args.estimate.split(",") if s]:
        if s not in SIZES:
            raise SystemExit(f"unknown size {s!r}: choose from {list(SIZES)}")
    for m in models:
        if m not in MODELS:
            raise SystemExit(f"unknown model {m!r}: choose from {list(MODELS)}")
    if BASELINE not in models:
        models.insert(0, BASELINE)
    limit = args.max_gb if args.max_gb is not None else 0.7 * _available_gb()
    common = ["--threads", str(args.threads), "--repeats", str(args.repeats), "--hidden",
              str(args.hidden), "--layers", str(args.layers), "--iters", str(args.iters),
              "--lam", str(args.lam), "--device", args.device, "--seed", str(args.seed)]
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            graph = os.path.join(tmp, f"{size}.pt")
            info = _run([sys.executable, __file__, "--generate", "--size", size, "--graph", graph,
                         "--seed", str(args.seed)])
            print(f"[{size}] {info}", flush=True)
            results[size] = {"graph": info}
            for model in models:
                est_gb = (info["edges"] * EST_BYTES_PER_EDGE[model] * args.hidden / 256
                          + info["nodes"] * args.hidden * 4 * EST_NODE_TENSORS) / 2**30
                if args.device == "cpu" and est_gb > limit:
                    why = f"estimated {est_gb:.1f} GB > {limit:.1f} GB"
                    results[size][model] = {"skipped": why}
                    print(f"[{size}] {model}: skipped ({results[size][model]['skipped']})")
                    continue
                r = _run([sys.executable, __file__, "--worker", "--size", size, "--model", model,
                          "--graph", graph] + common)
                results[size][model] = r
                print(f"[{size}] {model}: {r['time_s']:.2f} s/step, +{r['extra_mib']:.0f} MiB "
                      f"({r['bytes_per_edge']:.0f} B/edge)", flush=True)
    for target in [s for s in args.estimate.split(",") if s]:
        if target in results:
            continue
        results[target] = {m: _fit(results, m, target) for m in models}
        results[target] = {m: r for m, r in results[target].items() if r}
    # Ratios to the fixed-graph sparse-product GCN of the same size.
    for rows in results.values():
        base = rows.get(BASELINE, {})
        for model, r in rows.items():
            if model in MODELS and "time_s" in r and "time_s" in base:
                r["time_ratio"] = r["time_s"] / base["time_s"]
                r["cpu_ratio"] = r["cpu_s"] / base["cpu_s"]
                r["memory_ratio"] = r["extra_mib"] / max(base["extra_mib"], 1e-9)
    print(f"\n{'size':<9} {'model':<15} {'edges':>11} {'step s':>8} {'spread':>13} "
          f"{'x sparse':>8} {'cpu s':>7} {'x sparse':>8} {'MiB':>8} {'x sparse':>8} "
          f"{'B/edge':>7} {'B/node':>8}")
    for size, rows in results.items():
        for model in MODELS:
            r = rows.get(model)
            if r is None:
                continue
            if "skipped" in r:
                print(f"{size:<9} {model:<15} skipped: {r['skipped']}")
                continue
            spread = ("estimated" if r.get("estimated")
                      else f"{r['time_min_s']:.2f}-{r['time_max_s']:.2f}")
            print(f"{size:<9} {model:<15} {r['input_edges']:>11,} {r['time_s']:>8.2f} "
                  f"{spread:>13} {r.get('time_ratio', float('nan')):>8.2f} "
                  f"{r['cpu_s']:>7.2f} {r.get('cpu_ratio', float('nan')):>8.2f} "
                  f"{r['extra_mib']:>8.0f} {r.get('memory_ratio', float('nan')):>8.2f} "
                  f"{r['bytes_per_edge']:>7.0f} {r['bytes_per_node']:>8.0f}")
    settings = {k: v for k, v in vars(args).items()
                if k not in ("worker", "generate", "size", "model", "graph")}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"settings": settings, "targets": TARGETS, "results": results}, f, indent=2)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
