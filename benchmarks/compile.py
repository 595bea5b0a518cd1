"""``torch.compile`` of a gated GCN training step: graph breaks and speed-up.

    python benchmarks/compile.py                          # 20k nodes, 200k edges, CPU
    python benchmarks/compile.py --device cuda --nodes 200000 --edges 2000000

Counts the graph breaks of one step (forward, penalty, backward) with
``torch._dynamo.explain`` and lists where they are, then times the eager and
the compiled step in the same process (median and spread over rounds, after
warm-up and compilation). Writes ``results/compile.json``.
"""
import argparse
import json
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from graphsparse.graph import GatedAdjacency, GatedGCN


def build(args):
    g = torch.Generator().manual_seed(0)
    ei = torch.randint(0, args.nodes, (2, args.edges), generator=g)
    adj = GatedAdjacency(ei, args.nodes, groups="row", normalization=args.normalization,
                         gate_self_loops=False, unit_init=True, init_noise=0.1)
    model = GatedGCN(args.features, args.hidden, args.classes, adjacency=adj).to(args.device)
    x = torch.randn(args.nodes, args.features, generator=g).to(args.device)
    y = torch.randint(0, args.classes, (args.nodes,), generator=g).to(args.device)
    return model, x, y


def step(model, x, y):
    out = model(x)
    loss = F.cross_entropy(out, y) + 1e-3 * model.penalty(0.5, reduction="mean")
    loss.backward()
    return loss.detach()


def timed(fn, rounds, device):
    times = []
    for _ in range(rounds):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=20_000)
    parser.add_argument("--edges", type=int, default=200_000)
    parser.add_argument("--features", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--classes", type=int, default=8)
    parser.add_argument("--normalization", default="row")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="results/compile.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, x, y = build(args)

    explanation = torch._dynamo.explain(step)(model, x, y)
    breaks = [dict(reason=str(b.reason).splitlines()[0][:160],
                   where=[f"{f.filename.split('/')[-1]}:{f.lineno}" for f in b.user_stack[-2:]])
              for b in explanation.break_reasons]
    print(f"graph breaks: {explanation.graph_break_count}")
    for b in breaks:
        print(f"  {b['where']}: {b['reason']}")

    torch._dynamo.reset()
    compiled = torch.compile(step)
    for _ in range(3):                                   # warm-up and compilation
        step(model, x, y)
        compiled(model, x, y)
    eager_t, compiled_t = [], []
    for _ in range(args.rounds):                          # alternate, so both see the same load
        eager_t += timed(lambda: step(model, x, y), 1, args.device)
        compiled_t += timed(lambda: compiled(model, x, y), 1, args.device)
    ratios = [e / c for e, c in zip(eager_t, compiled_t)]
    result = dict(settings=vars(args), graph_breaks=explanation.graph_break_count, breaks=breaks,
                  eager_ms=1e3 * statistics.median(eager_t),
                  compiled_ms=1e3 * statistics.median(compiled_t),
                  speedup_median=statistics.median(ratios),
                  speedup_min=min(ratios), speedup_max=max(ratios))
    print(f"eager {result['eager_ms']:.1f} ms, compiled {result['compiled_ms']:.1f} ms: "
          f"speed-up {result['speedup_median']:.2f}x (range {result['speedup_min']:.2f}-"
          f"{result['speedup_max']:.2f} over {args.rounds} rounds)")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
