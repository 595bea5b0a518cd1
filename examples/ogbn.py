"""Node classification on ogbn-arxiv / ogbn-products with OGB's reference GCN
as the same-run baseline, scored by OGB's Evaluator.

    python examples/ogbn.py --dataset ogbn-arxiv                 # 10 runs, OGB's settings
    python examples/ogbn.py --dataset ogbn-products --runs 1 --device cuda
    python examples/ogbn.py --dataset ogbn-arxiv --runs 1 --epochs 20   # a smoke test

Needs ``pip install "graphsparse[ogb]"`` and the dataset under the data root
(``$GRAPHSPARSE_DATA/ogb/ogbn_arxiv``, OGB's own layout; ``ogb`` downloads it
there when the machine has internet). Without it the script stops and says
where the files go.

Methods are the entries of :data:`METHODS`: callables
``fit(data, settings, seed, evaluate) -> dict`` with keys ``train``, ``valid``,
``test`` (accuracy at the epoch of best validation accuracy), ``epoch`` and
``seconds``; ``evaluate(logits, mask)`` is OGB's Evaluator accuracy. Add a
method by adding an entry (and its settings to :data:`SETTINGS`).

``gcn``: OGB's reference full-batch GCN (``examples/nodeproppred/arxiv/gnn.py``
and ``products/gnn.py`` of the ogb repository): 3 GCNConv layers, hidden 256,
dropout 0.5, Adam lr 0.01, symmetric normalization with self-loops; batch norm
after each hidden layer on ogbn-arxiv as OGB's arxiv example (its products
example has none); 500 epochs (arxiv) and 300 (products), as there. The
propagation matrix is precomputed as a sparse CSR matrix (no ``[E, 256]``
message tensors: ogbn-products has 124M directed edges).

``gated``: the same 3-layer, 256-wide GCN on a learned adjacency (see
:data:`SETTINGS`), its layers' aggregation a CSR product over the learned
weights (no ``[E, 256]`` tensors either).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from graphsparse.data import DatasetNotFoundError
from graphsparse.data.ogb import dataset_dir, load_ogbn, ogbn_accuracy

#: OGB's reference settings per dataset (see the module docstring for the source)
SETTINGS: Dict[str, Dict[str, Dict[str, Any]]] = {
    "gcn": {
        "ogbn-arxiv": dict(num_layers=3, hidden=256, dropout=0.5, lr=0.01, epochs=500,
                           batch_norm=True),
        "ogbn-products": dict(num_layers=3, hidden=256, dropout=0.5, lr=0.01, epochs=300,
                              batch_norm=False),
    },
}
#: The learned structure: the GCN's layers (no batch norm: the gated layers
#: take the learned weights as they are) on a GatedAdjacency with the library's
#: adjacency defaults, and a StructureLearner whose schedule is the Planetoid
#: recipe's proportions (gate at 1/3 of the epochs, ramp over 1/6). The
#: penalty is the per-node mean (``reduction="mean"``): with 1e5-1e6 nodes the
#: paper's sum would outweigh the cross-entropy by orders of magnitude, so
#: ``lam`` is per node. Not run on the real datasets here (no OGB data on
#: this machine); smoke-tested on a tiny dataset in OGB's layout.
for _name, _gcn in SETTINGS["gcn"].items():
    SETTINGS.setdefault("gated", {})[_name] = dict(
        num_layers=3, hidden=256, dropout=0.5, lr=0.01, epochs=_gcn["epochs"],
        gate_start=1 / 3, warmup=1 / 6,     # fractions of the epochs (so --epochs scales them)
        learner=dict(lam=0.1, reduction="mean", distill=0.0, prior=None))


def gcn_operator(edge_index: Tensor, num_nodes: int) -> Tensor:
    r""":math:`D^{-1/2}(A + I)D^{-1/2}` as sparse CSR, ``A[i, j]`` for edge ``(j -> i)``."""
    from torch_geometric.nn.conv.gcn_conv import gcn_norm
    ei, w = gcn_norm(edge_index, None, num_nodes, add_self_loops=True)
    return torch.sparse_coo_tensor(ei.flip(0), w, (num_nodes, num_nodes)).coalesce().to_sparse_csr()


class OGBGCN(nn.Module):
    """OGB's reference GCN: GCNConv layers with (optional) batch norm, ReLU and
    dropout between them. Shapes: ``x`` ``[N, F]``, ``adj`` ``[N, N]`` CSR -> ``[N, C]``."""

    def __init__(self, in_channels: int, hidden: int, out_channels: int, num_layers: int,
                 dropout: float, batch_norm: bool) -> None:
        super().__init__()
        from torch_geometric.nn import GCNConv
        dims = [in_channels] + [hidden] * (num_layers - 1) + [out_channels]
        self.convs = nn.ModuleList([GCNConv(a, b, normalize=False) for a, b in zip(dims, dims[1:])])
        self.bns = nn.ModuleList([nn.BatchNorm1d(hidden) if batch_norm else nn.Identity()
                                  for _ in range(num_layers - 1)])
        self.dropout = dropout
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for conv in self.convs:
            conv.reset_parameters()
        for bn in self.bns:
            if isinstance(bn, nn.BatchNorm1d):
                bn.reset_parameters()

    def forward(self, x: Tensor, adj: Tensor) -> Tensor:
        for conv, bn in zip(self.convs[:-1], self.bns):
            x = F.dropout(bn(conv(x, adj)).relu(), self.dropout, self.training)
        return self.convs[-1](x, adj)


def fit_gcn(data, settings: Dict[str, Any], seed: int,
            evaluate: Callable[[Tensor, Tensor], float]) -> Dict[str, Any]:
    """OGB's GCN on the input graph; the epoch of best validation accuracy is kept."""
    torch.manual_seed(seed)
    if not hasattr(data, "gcn_adj"):
        data.gcn_adj = gcn_operator(data.edge_index, data.num_nodes)
    model = OGBGCN(data.num_features, settings["hidden"], int(data.y.max()) + 1,
                   settings["num_layers"], settings["dropout"],
                   settings["batch_norm"]).to(data.x.device)
    opt = torch.optim.Adam(model.parameters(), lr=settings["lr"])
    best = None
    t0 = time.perf_counter()
    for epoch in range(settings["epochs"]):
        model.train()
        opt.zero_grad(set_to_none=True)
        out = model(data.x, data.gcn_adj)
        F.cross_entropy(out[data.train_mask], data.y[data.train_mask]).backward()
        opt.step()
        model.eval()
        with torch.no_grad():
            out = model(data.x, data.gcn_adj)
        accs = {k: evaluate(out, m) for k, m in
                (("train", data.train_mask), ("valid", data.val_mask), ("test", data.test_mask))}
        if best is None or accs["valid"] > best["valid"]:
            best = dict(accs, epoch=epoch)
    return dict(best, seconds=time.perf_counter() - t0)


def fit_gated(data, settings: Dict[str, Any], seed: int,
              evaluate: Callable[[Tensor, Tensor], float]) -> Dict[str, Any]:
    """The learned structure, full batch: :class:`~graphsparse.graph.GatedGCN`
    on a :class:`~graphsparse.graph.GatedAdjacency` (library defaults: row
    gates, row normalization, always-on self-loops), driven by a
    :class:`~graphsparse.structure.StructureLearner`; its checkpoint choice
    uses OGB's validation accuracy."""
    from graphsparse.graph import GatedAdjacency, GatedGCN
    from graphsparse.structure import ADJACENCY_DEFAULTS, StructureLearner
    from graphsparse.utils import seed_everything

    seed_everything(seed)
    adj = GatedAdjacency(data.edge_index, data.num_nodes,
                         **{k: v for k, v in ADJACENCY_DEFAULTS.items()
                            if not k.startswith("scorer") and k != "knn"}).to(data.x.device)
    model = GatedGCN(data.num_features, settings["hidden"], int(data.y.max()) + 1,
                     num_layers=settings["num_layers"], dropout=settings["dropout"],
                     adjacency=adj).to(data.x.device)
    epochs = settings["epochs"]
    learner = StructureLearner(adj, data.y, data.train_mask, x=data.x, model=model,
                               gate_start=int(epochs * settings["gate_start"]),
                               warmup=max(int(epochs * settings["warmup"]), 1),
                               **settings["learner"])
    opt = torch.optim.Adam([dict(params=model.weight_parameters(), lr=settings["lr"]),
                            *learner.param_groups()])
    history = []
    t0 = time.perf_counter()
    for _ in range(epochs):
        model.train()
        opt.zero_grad(set_to_none=True)
        out = model(data.x, *adj())
        loss = F.cross_entropy(out[data.train_mask], data.y[data.train_mask])
        (loss + learner.loss(out)).backward()
        opt.step()
        model.eval()
        with torch.no_grad():
            out = model(data.x, *adj())
        accs = {k: evaluate(out, m) for k, m in
                (("train", data.train_mask), ("valid", data.val_mask), ("test", data.test_mask))}
        learner.step(out, accs["valid"])
        history.append(accs)
    seconds = time.perf_counter() - t0
    best = learner.restore()
    neighbour = adj.edge_index[0] != adj.edge_index[1]
    return dict(history[best["epoch"]], epoch=best["epoch"], seconds=seconds,
                edge_sparsity=float((best["values"][neighbour] == 0).float().mean()))


#: name -> fit(data, settings, seed, evaluate)
METHODS: Dict[str, Callable[..., Dict[str, Any]]] = {"gcn": fit_gcn, "gated": fit_gated}


def main(argv=None) -> Dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="ogbn-arxiv", choices=["ogbn-arxiv", "ogbn-products"])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--runs", type=int, default=10, help="seeds 0..runs-1 (OGB: 10)")
    parser.add_argument("--epochs", type=int, default=None, help="override every method's epochs")
    parser.add_argument("--root", default=None, help="data root (default: $GRAPHSPARSE_DATA)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--out", default=None, help="JSON output (default: results/<dataset>.json)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        data = load_ogbn(args.dataset, root=args.root, device=args.device)
    except (DatasetNotFoundError, ImportError) as exc:
        print(f"examples/ogbn.py: cannot load {args.dataset}: {exc}", file=sys.stderr)
        print(f"(expected folder: {dataset_dir(args.dataset, args.root)})", file=sys.stderr)
        raise SystemExit(2) from None
    print(f"{args.dataset}: {data.num_nodes} nodes, {data.edge_index.size(1)} directed edges, "
          f"{data.num_features} features; train/valid/test {int(data.train_mask.sum())}/"
          f"{int(data.val_mask.sum())}/{int(data.test_mask.sum())}")

    def evaluate(logits: Tensor, mask: Tensor) -> float:
        return ogbn_accuracy(args.dataset, logits, data.y, mask)

    records = []
    for name in args.methods:
        settings = dict(SETTINGS.get(name, {}).get(args.dataset, {}))
        if args.epochs is not None:
            settings["epochs"] = args.epochs
        runs = [METHODS[name](data, settings, seed, evaluate) for seed in range(args.runs)]
        rec = dict(dataset=args.dataset, method=name, settings=settings, runs=runs)
        for key in ("train", "valid", "test", "seconds"):
            vals = [r[key] for r in runs]
            rec[f"{key}_mean"] = statistics.fmean(vals)
            rec[f"{key}_std"] = statistics.stdev(vals) if len(vals) > 1 else 0.0
        print(f"{name:10s} test {100 * rec['test_mean']:.2f} ± {100 * rec['test_std']:.2f}  "
              f"valid {100 * rec['valid_mean']:.2f}  ({rec['seconds_mean']:.1f} s per run)")
        records.append(rec)
    out = Path(args.out or f"results/{args.dataset}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(records, indent=1))
    print(f"wrote {out}")
    return dict(records=records)


if __name__ == "__main__":
    main()
