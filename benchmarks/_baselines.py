"""Same-run baselines of ``benchmarks/structure.py``: a GCN, a GCN with
residual connections (Platonov et al., ICLR 2023) and an MLP that ignores the
graph, trained full-batch with model selection on validation, plus the
metrics (accuracy, ROC-AUC) in plain torch."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from graphsparse.graph.features import feature_dropout, sparse_features


# --------------------------------------------------------------------------- metrics
def accuracy(logits: Tensor, y: Tensor) -> float:
    """Share of nodes whose arg-max class is the label."""
    return float((logits.argmax(-1) == y).float().mean())


def roc_auc(score: Tensor, y: Tensor) -> float:
    r"""Area under the ROC curve of a binary score, ties counted one half
    (the Mann-Whitney statistic):

    .. math::
        \mathrm{AUC} = \frac{\sum_{i \in P} r_i - |P|(|P|+1)/2}{|P|\,|N|},

    with :math:`r_i` the average rank of score :math:`i` among all scores.

    Shapes: ``score`` ``[n]`` (higher: class 1), ``y`` ``[n]`` in ``{0, 1}``.
    """
    score, y = score.detach().double().flatten(), y.flatten().bool()
    pos, n = int(y.sum()), y.numel()
    if pos == 0 or pos == n:
        raise ValueError("'roc_auc' needs both classes among the labels")
    uniq, inverse, counts = torch.unique(score, return_inverse=True, return_counts=True)
    # average rank (1-based) of each distinct value: ties share the mean of their ranks
    last = counts.cumsum(0).double()
    avg_rank = last - (counts.double() - 1) / 2
    ranks = avg_rank[inverse]
    return float((ranks[y].sum() - pos * (pos + 1) / 2) / (pos * (n - pos)))


def metric_value(metric: str, logits: Tensor, y: Tensor) -> float:
    """``"accuracy"`` or ``"roc_auc"`` (binary: score = logit of class 1 minus class 0)."""
    if metric == "accuracy":
        return accuracy(logits, y)
    if metric == "roc_auc":
        return roc_auc(logits[:, 1] - logits[:, 0], y)
    raise ValueError(f"'metric' must be 'accuracy' or 'roc_auc' (got {metric!r})")


# --------------------------------------------------------------------------- propagation
def gcn_operator(edge_index: Tensor, num_nodes: int, dtype: torch.dtype = torch.float32) -> Tensor:
    r"""The GCN propagation matrix :math:`\hat A = D^{-1/2}(A + I)D^{-1/2}`
    (PyG's :func:`~torch_geometric.nn.conv.gcn_conv.gcn_norm`) as a sparse CSR
    tensor with ``A[i, j]`` the weight of edge ``(j -> i)``, ready for
    ``GCNConv(normalize=False)``: the same operator as GCNConv's default,
    computed once (transductive) and applied as a sparse-matrix product.

    Shapes: ``edge_index`` ``[2, E]`` -> ``[N, N]`` sparse CSR.
    """
    from torch_geometric.nn.conv.gcn_conv import gcn_norm
    ei, w = gcn_norm(edge_index, None, num_nodes, add_self_loops=True, dtype=dtype)
    adj = torch.sparse_coo_tensor(ei.flip(0), w, (num_nodes, num_nodes)).coalesce()
    return adj.to_sparse_csr()


# --------------------------------------------------------------------------- features
# --------------------------------------------------------------------------- models
class GCN(nn.Module):
    """Kipf & Welling's GCN: dropout, GCNConv, ReLU, dropout, GCNConv.

    Shapes: ``x`` ``[N, F]`` (dense or sparse CSR), ``adj`` from :func:`gcn_operator`
    -> ``[N, C]``.
    """

    def __init__(self, in_channels: int, out_channels: int, hidden: int = 16,
                 dropout: float = 0.5, num_layers: int = 2) -> None:
        super().__init__()
        from torch_geometric.nn import GCNConv
        if num_layers < 1:
            raise ValueError(f"'GCN' expects 'num_layers' >= 1 (got {num_layers})")
        dims = [in_channels] + [hidden] * (num_layers - 1) + [out_channels]
        self.dropout = dropout
        self.convs = nn.ModuleList([GCNConv(a, b, normalize=False) for a, b in zip(dims, dims[1:])])
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for conv in self.convs:
            conv.reset_parameters()

    def forward(self, x: Tensor, adj: Tensor) -> Tensor:
        for i, conv in enumerate(self.convs):
            x = feature_dropout(x, self.dropout, self.training)  # F.dropout unless x is CSR
            x = conv(x, adj)
            if i < len(self.convs) - 1:
                x = x.relu()
        return x


class ResidualNet(nn.Module):
    r"""The residual architecture of Platonov et al. (ICLR 2023, Section 4.1):
    an input linear map, ``num_layers`` residual blocks and an output linear
    map. Block :math:`\ell`:

    .. math::
        h \leftarrow h + \mathrm{Drop}(W_2\,\mathrm{Drop}(\mathrm{GELU}(W_1\,
        \mathrm{Agg}(\mathrm{LN}(h))))),

    with :math:`\mathrm{Agg}(z) = \hat A z` (GCN propagation) when ``graph``
    is true, else the identity: the same network ignoring the graph (their
    "ResNet" baseline), so the two differ by the aggregation alone.

    Shapes: ``x`` ``[N, F]`` (dense or sparse CSR), ``adj`` ``[N, N]`` sparse
    (unused without graph) -> ``[N, C]``.
    """

    def __init__(self, in_channels: int, out_channels: int, hidden: int = 64,
                 num_layers: int = 2, dropout: float = 0.2, graph: bool = True) -> None:
        super().__init__()
        self.dropout, self.graph = dropout, graph
        self.inp = nn.Linear(in_channels, hidden)
        self.norms = nn.ModuleList([nn.LayerNorm(hidden) for _ in range(num_layers)])
        self.lin1 = nn.ModuleList([nn.Linear(hidden, hidden) for _ in range(num_layers)])
        self.lin2 = nn.ModuleList([nn.Linear(hidden, hidden) for _ in range(num_layers)])
        self.out_norm = nn.LayerNorm(hidden)
        self.out = nn.Linear(hidden, out_channels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.LayerNorm)):
                m.reset_parameters()

    def forward(self, x: Tensor, adj: Optional[Tensor] = None) -> Tensor:
        h = F.gelu(F.dropout(self.inp(x), self.dropout, self.training))
        for norm, lin1, lin2 in zip(self.norms, self.lin1, self.lin2):
            z = norm(h)
            if self.graph:
                z = torch.sparse.mm(adj, z)
            z = F.dropout(F.gelu(lin1(z)), self.dropout, self.training)
            h = h + F.dropout(lin2(z), self.dropout, self.training)
        return self.out(self.out_norm(h))


# --------------------------------------------------------------------------- training
@dataclass
class RunResult:
    """One training run: the validation and test metric at the epoch of best
    validation metric (test never used to choose), with the learned graph's
    statistics (zero for fixed-graph methods)."""
    val: float
    test: float
    epoch: int
    seconds: float
    edge_sparsity: float = 0.0
    added_edges: int = 0
    extra: Dict[str, Any] = field(default_factory=dict)


def train_full_batch(model: nn.Module, forward: Callable[[], Tensor], y: Tensor,
                     train: Tensor, val: Tensor, test: Tensor, metric: str,
                     epochs: int, lr: float, weight_decay: float) -> RunResult:
    """Adam, full batch, cross-entropy on the training nodes; after every epoch
    the validation metric is computed and the best epoch's test metric kept
    (later epochs win ties, as ``fit_gcn``)."""
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    best: Optional[tuple] = None
    t0 = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(forward()[train], y[train]).backward()
        opt.step()
        model.eval()
        with torch.no_grad():
            out = forward()
        v = metric_value(metric, out[val], y[val])
        if best is None or v >= best[0]:
            best = (v, metric_value(metric, out[test], y[test]), epoch)
    return RunResult(val=best[0], test=best[1], epoch=best[2], seconds=time.perf_counter() - t0)


def model_input(data) -> Tensor:
    """``data.x`` through :func:`sparse_features`, computed once per dataset."""
    if getattr(data, "x_model", None) is None:
        data.x_model = sparse_features(data.x)
    return data.x_model


def fit_gcn(data, train, val, test, metric: str, settings: Dict[str, Any], seed: int) -> RunResult:
    """:class:`GCN` on the input graph."""
    torch.manual_seed(seed)
    x = model_input(data)
    num_classes = int(data.y.max()) + 1
    adj = data.gcn_adj
    model = GCN(data.num_features, num_classes, hidden=settings["hidden"],
                dropout=settings["dropout"], num_layers=settings["num_layers"])
    return train_full_batch(model, lambda: model(x, adj), data.y, train, val, test, metric,
                            settings["epochs"], settings["lr"], settings["weight_decay"])


def fit_residual(data, train, val, test, metric: str, settings: Dict[str, Any], seed: int,
                 graph: bool = True) -> RunResult:
    """:class:`ResidualNet` with (``graph=True``) or without the GCN aggregation."""
    torch.manual_seed(seed)
    x = model_input(data)
    num_classes = int(data.y.max()) + 1
    adj = data.gcn_adj if graph else None
    model = ResidualNet(data.num_features, num_classes, hidden=settings["hidden"],
                        num_layers=settings["num_layers"], dropout=settings["dropout"],
                        graph=graph)
    return train_full_batch(model, lambda: model(x, adj), data.y, train, val, test, metric,
                            settings["epochs"], settings["lr"], settings["weight_decay"])


def fit_mlp(data, train, val, test, metric: str, settings: Dict[str, Any], seed: int) -> RunResult:
    """:class:`ResidualNet` without aggregation: ignores the graph."""
    return fit_residual(data, train, val, test, metric, settings, seed, graph=False)


def _fit_gated_recipe(data, x, train, val, test, metric: str, cfg: Dict[str, Any],
                      seed: int) -> RunResult:
    """One recipe's run, written as a user would with the composable API:
    :func:`~graphsparse.structure.build_structure_model` (a
    :class:`~graphsparse.graph.GatedAdjacency` inside a ``GatedGCN`` or
    ``GatedResGCN``) and a :class:`~graphsparse.structure.StructureLearner`
    whose checkpoint choice runs on the benchmark's validation metric."""
    from graphsparse.structure import LEARNER_DEFAULTS, StructureLearner
    from graphsparse.structure.train import build_structure_model
    from graphsparse.utils import seed_everything

    seed_everything(seed)
    y = data.y
    model = build_structure_model(x.size(1), int(y.max()) + 1, data.edge_index, data.num_nodes,
                                  cfg, x)
    adj = model.adjacency
    learner = StructureLearner(adj, y, train, x=x, model=model,
                               **{k: cfg[k] for k in LEARNER_DEFAULTS})
    opt = torch.optim.Adam([dict(params=model.weight_parameters(), lr=cfg["lr"],
                                 weight_decay=cfg["weight_decay"]), *learner.param_groups()])
    history = []
    xm = model_input(data)       # sparse CSR bag-of-words features, as the GCN baseline's
    t0 = time.perf_counter()
    for _ in range(cfg["epochs"]):
        model.train()
        opt.zero_grad()
        out = model(xm, *adj())
        loss = F.cross_entropy(out[train], y[train]) + learner.loss(out)
        loss.backward()
        opt.step()
        model.eval()
        with torch.no_grad():
            out = model(xm, *adj())
        v = metric_value(metric, out[val], y[val])
        learner.step(out, v)
        history.append((v, metric_value(metric, out[test], y[test])))
    seconds = time.perf_counter() - t0
    best = learner.restore()
    v, t = history[best["epoch"]]
    values = best["values"]
    neighbour = adj.edge_index[0] != adj.edge_index[1]
    given = neighbour & ~adj.new_mask
    return RunResult(v, t, best["epoch"], seconds,
                     edge_sparsity=float((values[given] == 0).float().mean()),
                     added_edges=int(((values > 0) & adj.new_mask).sum()),
                     extra=dict(self_share=float(adj.self_share(values).mean())))


#: Normalization labels of :func:`fit_gated` beyond the plain names.
NORMALIZATION_LABELS: Dict[str, Dict[str, Any]] = {
    "sinkhorn+degree": dict(normalization="sinkhorn", marginals="degree"),
}


def fit_gated(data, train, val, test, metric: str, settings: Dict[str, Any],
              seed: int) -> RunResult:
    """The learned structure: every recipe of ``settings["recipes"]`` (names of
    :data:`graphsparse.structure.RECIPES`, with ``settings["config"]`` on top,
    and ``settings["epochs"]`` when not None; under every normalization of
    ``settings["normalizations"]`` when given, but the ``"recipe/norm"``
    names in ``settings["skip"]``) is trained with the same seed, and the run
    of best validation metric is kept (ties: the first). With
    ``settings["input_graph"]`` (a normalization) one more configuration,
    ``"input/<norm>"``: the ``preserve`` recipe with its gates never trained
    (``gate_start`` = epochs, any sparsity), i.e. the model on the input
    graph, so that validation can say the learned graph does not help. A
    normalization ``"sinkhorn+degree"`` is Sinkhorn with
    ``marginals="degree"`` (:data:`NORMALIZATION_LABELS`). Test
    metrics choose nothing. ``seconds`` is the whole selection's time (all
    recipes); ``extra`` names the chosen recipe and each recipe's validation
    metric."""
    from graphsparse.structure import config_name, selected_config

    x = data.x.to_dense() if data.x.layout != torch.strided else data.x
    names = [config_name(name, norm) for name in settings["recipes"]
             for norm in settings.get("normalizations") or [None]]
    names = [n for n in names if n not in settings.get("skip", ())]
    if settings.get("input_graph"):
        names.append(config_name("input", settings["input_graph"]))
    over = dict(settings.get("config") or {})
    if settings.get("epochs") is not None:
        over["epochs"] = settings["epochs"]
    runs = {}
    for key in names:
        name, cfg_over = key, over
        recipe, _, norm = key.partition("/")
        if norm in NORMALIZATION_LABELS:   # the label sets the normalization itself
            name, cfg_over = recipe, {**over, **NORMALIZATION_LABELS[norm]}
        if key.startswith("input/"):      # the preserve recipe whose gates never train
            cfg = selected_config(name.replace("input", "preserve", 1), cfg_over)
            cfg.update(gate_start=cfg["epochs"], min_sparsity=0.0)
        else:
            cfg = selected_config(name, cfg_over)
        runs[key] = _fit_gated_recipe(data, x, train, val, test, metric, cfg, seed)
    chosen = max(runs, key=lambda n: (runs[n].val, -list(runs).index(n)))
    best = runs[chosen]
    best.extra.update(recipe=chosen, seconds_chosen=best.seconds,
                      recipe_val={n: r.val for n, r in runs.items()},
                      recipe_test={n: r.test for n, r in runs.items()})
    best.seconds = sum(r.seconds for r in runs.values())
    return best
