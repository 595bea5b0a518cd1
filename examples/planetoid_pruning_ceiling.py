"""How much does removing edges cost a plain GCN? A static reference for the
learned structures of ``examples/planetoid.py``.

    python examples/planetoid_pruning_ceiling.py --dataset Cora --fraction 0.2 --seeds 3
    python examples/planetoid_pruning_ceiling.py --dataset Cora --normalization row

For each rule, removes ``--fraction`` of the (directed) edges of the public
Planetoid graph *before* training and trains PyG's GCN (Kipf & Welling
setting, checkpoint chosen on validation) on what is left:

* ``random``: a uniform random subset;
* ``low_gcn_weight``: the smallest :math:`1/\\sqrt{(d_i+1)(d_j+1)}` (edges
  between high-degree nodes, whose messages are averaged with many others);
* ``low_agreement`` / ``high_agreement``: the lowest / highest cosine between
  the endpoints' predicted class distributions of a GCN trained beforehand
  (training nodes: their labels), the signal behind ``prior="agreement"``;
* ``low_feature_cosine``: the least similar endpoint features;
* ``in_degree_cap``: random in-coming edges of the nodes with the most of
  them, one at a time, i.e. every in-degree capped at the largest ``c``
  that removes the fraction (the edges *into* hubs go, leaves keep theirs).

``--normalization row`` trains the GCN on :math:`D^{-1}(A+I)` (the mean over
the neighbours, as the learned structure's default) instead of
:math:`D^{-1/2}(A+I)D^{-1/2}`.

A rule that loses little here is a pruning a structure learner could aim
for; one that loses a lot here cannot be reached by pruning alone. Prints a
table and writes ``pruning_ceiling_<dataset>.json``.
"""
import argparse
import json
import statistics
from pathlib import Path

import torch
import torch.nn.functional as F
from torch_geometric.utils import degree

from graphsparse.data.planetoid import load_planetoid
from graphsparse.structure import GCN_DEFAULTS, fit_gcn


def in_degree_cap(edge_index, num_nodes: int, gen) -> torch.Tensor:
    """``-(position among the node's in-coming edges, in random order)``, ties
    broken toward larger in-degrees: the lowest scores cap the in-degrees."""
    row = edge_index[1]
    perm = torch.randperm(row.numel(), generator=gen).to(row.device)
    order = perm[torch.argsort(row[perm], stable=True)]
    count = torch.bincount(row, minlength=num_nodes)
    start = torch.cumsum(count, 0) - count
    rank = torch.empty_like(row)
    rank[order] = torch.arange(row.numel(), device=row.device) - start[row[order]]
    deg = count[row].float()
    return -(rank.float() + deg / (deg.max() + 1))


def removal_scores(data, reference_seed: int, config: dict):
    """Per-edge scores ``[E]``; each rule removes the lowest-scored edges."""
    ei, n = data.edge_index, data.num_nodes
    deg = degree(ei[1], n) + 1
    ref = fit_gcn(data.x, ei, data.y, data.train_mask, data.val_mask, config=config,
                  seed=reference_seed)
    with torch.no_grad():
        prob = ref.model.eval()(data.x).softmax(-1)
    prob[data.train_mask] = F.one_hot(data.y[data.train_mask], prob.size(1)).to(prob.dtype)
    agree = F.cosine_similarity(prob[ei[0]], prob[ei[1]], dim=-1)
    gen = torch.Generator().manual_seed(reference_seed)
    return {
        "random": torch.rand(ei.size(1), generator=gen).to(ei.device),
        "low_gcn_weight": (deg[ei[0]] * deg[ei[1]]).rsqrt(),
        "low_agreement": agree,
        "high_agreement": -agree,
        "low_feature_cosine": F.cosine_similarity(data.x[ei[0]], data.x[ei[1]], dim=-1),
        "in_degree_cap": in_degree_cap(ei, n, gen),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="Cora", choices=["Cora", "CiteSeer", "PubMed"])
    p.add_argument("--root", default=None, help="data root (default: $GRAPHSPARSE_DATA)")
    p.add_argument("--fraction", type=float, default=0.2, help="fraction of edges removed")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=200, help="GCN training epochs")
    p.add_argument("--normalization", default="sym", choices=["sym", "row"],
                   help="GCN propagation: D^-1/2 (A+I) D^-1/2 (Kipf & Welling) or D^-1 (A+I)")
    p.add_argument("--reference-seed", type=int, default=100,
                   help="seed of the GCN whose predictions rank the edges")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="results")
    args = p.parse_args()
    if not 0.0 < args.fraction < 1.0:
        raise ValueError(f"'--fraction' must be in (0, 1) (got {args.fraction})")
    torch.set_num_threads(args.threads)
    data = load_planetoid(args.dataset, root=args.root, device=args.device)
    ei = data.edge_index
    k = int(args.fraction * ei.size(1))
    config = dict(GCN_DEFAULTS, epochs=args.epochs, normalization=args.normalization)

    def accuracy(edge_index):
        accs = [100 * fit_gcn(data.x, edge_index, data.y, data.train_mask, data.val_mask,
                              data.test_mask, config=config, seed=s).test_acc
                for s in range(args.seeds)]
        return statistics.fmean(accs), (statistics.stdev(accs) if len(accs) > 1 else 0.0)

    print(f"{'rule':<20}{'edges':>8}{'test acc':>16}{'vs full':>9}")
    scores = removal_scores(data, args.reference_seed, config)
    graphs = [("none", ei)] + [(rule, ei[:, score.argsort()[k:]]) for rule, score in scores.items()]
    rows = []
    for rule, edge_index in graphs:
        mean, std = accuracy(edge_index)
        rows.append(dict(rule=rule, edges=edge_index.size(1), mean=mean, std=std,
                         delta=mean - (rows[0]["mean"] if rows else mean)))
        r = rows[-1]
        print(f"{rule:<20}{r['edges']:>8}{mean:>9.2f} ± {std:<4.2f}{r['delta']:>+9.2f}", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    suffix = "" if args.normalization == "sym" else f"_{args.normalization}"
    path = out / f"pruning_ceiling_{args.dataset.lower()}{suffix}.json"
    path.write_text(json.dumps(dict(dataset=args.dataset, fraction=args.fraction,
                                    seeds=args.seeds, settings=config, results=rows), indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
