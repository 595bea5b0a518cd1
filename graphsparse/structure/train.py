"""Training a GCN with a learned sparse adjacency, and the plain GCN baseline,
with model selection on validation accuracy."""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..graph import EdgeScorer, GatedAdjacency, GatedGCN, row_norm
from ..utils import seed_everything

#: Defaults of the learned-structure GCN (see the README, "Structure learning").
STRUCTURE_DEFAULTS: Dict[str, Any] = dict(
    hidden=16,             # Kipf & Welling's GCN
    dropout=0.5,
    lr=0.01,               # Adam, convolution weights
    weight_decay=5e-4,     # on convolution weights only
    epochs=300,
    groups="row",          # row competition: a node's in-coming neighbours compete
    normalization="row",   # see the README: pruning into high-degree nodes is cheap under row sums
    num_iters=10,          # Sinkhorn iterations
    symmetric=False,
    gate_self_loops=False, # False: self-loops always on, out of the competitions
    unit_init=True,        # initial adjacency = the candidate graph with unit weights
    init_noise=0.1,        # std of Gaussian noise on the initial logits: breaks the ties of equal rows
    scorer=None,           # None: free per-edge logits; "dot" / "mlp" / "cosine": an EdgeScorer
    scorer_hidden=64,
    gate_lr=1e-3,          # Adam, free logits (or scorer): slow, they fit the 140 labels
    lam=2e-3,              # penalty weight lambda
    warmup=50,             # epochs over which lambda ramps up linearly from 0
    p=0.5,
    min_sparsity=0.2,      # model selection only among checkpoints at least this sparse
    gate_start=100,        # epochs of GCN weights only (gate frozen at init, lambda = 0)
    distill=0.11,          # mu: weight of sum_i KL(teacher_i || model_i) over all nodes; teacher: predictions at gate_start
    prior="agreement",     # None, or "agreement": logit prior from the model's own predictions
    prior_scale=6.0,       # tau: prior = tau * (cos(P_i, P_j) - 1), in [-tau, 0]
    prior_temperature=0.1, # softmax temperature of the predictions behind the prior (sharpens)
    prior_momentum=0.9,    # EMA of the predicted class distributions behind the prior
    prior_features=1.0,    # kappa: + kappa * z-score of the endpoints' feature cosine
    threshold_lr=0.02,     # Adam lr of the thresholds beta (None: gate_lr); sets the pruning pace
    degree_scaled_thresholds=False, # True: threshold steps scaled by log(group size) / log(mean size)
)

#: Named overrides of :data:`STRUCTURE_DEFAULTS`, among which
#: :func:`select_structure` chooses on validation accuracy. ``"preserve"`` (the
#: defaults) prunes what does not change the predictions (self-distillation);
#: ``"denoise"`` lets the agreement prior remove the edges that mislead them
#: (no distillation, whose teacher would keep the misled predictions).
RECIPES: Dict[str, Dict[str, Any]] = {
    "preserve": {},
    "denoise": dict(distill=0.0, groups="both", unit_init=False, init_noise=0.0, lam=1e-3,
                    gate_start=50, epochs=200),
}


@dataclass
class FitResult:
    """What a training run produced (at the checkpoint selected on validation)."""
    val_acc: float
    test_acc: Optional[float]
    epoch: int
    edge_sparsity: float
    seconds_per_epoch: float
    history: List[Dict[str, float]] = field(default_factory=list)
    model: Optional[nn.Module] = None
    edge_values: Optional[Tensor] = None   # [E_cand] at the selected checkpoint
    recipe: Optional[str] = None           # the RECIPES entry chosen by select_structure

    def summary(self) -> Dict[str, Any]:
        return dict(val_acc=self.val_acc, test_acc=self.test_acc, epoch=self.epoch,
                    edge_sparsity=self.edge_sparsity, seconds_per_epoch=self.seconds_per_epoch,
                    recipe=self.recipe)


def _accuracy(logits: Tensor, y: Tensor, mask: Optional[Tensor]) -> Optional[float]:
    if mask is None or int(mask.sum()) == 0:
        return None
    return float((logits[mask].argmax(-1) == y[mask]).float().mean())


def build_structure_model(num_features: int, num_classes: int, edge_index: Tensor,
                          num_nodes: int, config: Dict[str, Any]) -> GatedGCN:
    """The :class:`~graphsparse.graph.GatedGCN` described by ``config``."""
    scorer = None
    if config["scorer"] is not None:
        scorer = EdgeScorer(num_features, config["scorer_hidden"], kind=config["scorer"])
    adj = GatedAdjacency(edge_index, num_nodes, groups=config["groups"],
                         normalization=config["normalization"], num_iters=config["num_iters"],
                         symmetric=config["symmetric"], scorer=scorer,
                         gate_self_loops=config["gate_self_loops"],
                         unit_init=config["unit_init"])
    return GatedGCN(num_features, config["hidden"], num_classes, num_layers=2,
                    dropout=config["dropout"], adjacency=adj)


def fit_structure(x: Tensor, edge_index: Tensor, y: Tensor, train_mask: Tensor,
                  val_mask: Tensor, test_mask: Optional[Tensor] = None,
                  config: Optional[Dict[str, Any]] = None, seed: int = 0,
                  progress: bool = False, desc: str = "structure") -> FitResult:
    r"""Trains a GCN and its learned adjacency jointly on

    .. math::
        \mathcal{L}_{CE}(\text{train}) + \mu \sum_{v} \mathrm{KL}(T_v \,\|\, P_v)
        + \lambda_t \sum_i \mathcal{R}(A_{i,:}) + \mathcal{R}(A_{:,i}),

    with Adam (separate learning rates for the convolution weights, the gate
    logits and the thresholds), and keeps the checkpoint of best validation
    accuracy (ties: the later, sparser one) among those with at least
    ``min_sparsity`` of the gated candidate edges (:attr:`GatedAdjacency.gated_mask`:
    always-on self-loops are not counted) exactly zero. Test accuracy is
    only recorded, never used for selection.

    **The default recipe** (:data:`STRUCTURE_DEFAULTS`) and what each part
    prevents. Free per-edge logits trained on the 140 (Cora) labels overfit:
    the training loss only sees the edges within two hops of the training
    nodes, so every other edge is pruned by the penalty alone, with nothing
    to say whether the predictions needed it.

    1. ``gate_start``: the convolution weights train alone for the first
       epochs (gate frozen at its initialization, :math:`\lambda = 0`), so the
       gate starts from a model that already predicts; :math:`\lambda` then
       ramps up over ``warmup`` epochs.
    2. ``distill`` (:math:`\mu`): self-distillation on **every** node. The
       teacher :math:`T` is the model's own (eval-mode) predicted class
       distribution at ``gate_start``, fixed; :math:`P` is the model's
       prediction. Pruning an edge costs what it changes in the predictions
       of all nodes, labelled or not, so the penalty removes the edges the
       predictions do not need. A sum over nodes, like the penalty, so
       :math:`\mu` does not depend on the graph's size.
    3. ``groups="row"`` with ``normalization="row"``: a node's in-coming
       neighbours compete and the node averages those that survive. Removing
       one of many neighbours barely moves an average, removing one of two
       does: the distillation then prunes the in-coming edges of high-degree
       nodes first. (Column competitions would prune a hub's out-going edges,
       i.e. the only neighbour of its leaves; with ``"sym"`` pruning an edge
       into a hub also rescales all the hub's out-going messages.)
    4. ``unit_init`` and ``init_noise``: the initial adjacency is the input
       graph with unit weights, with small Gaussian noise on the logits. The
       penalty has no gradient on a row of equal gates (it is a saddle point
       of the p-norm); the noise breaks those ties.
    5. ``prior="agreement"``: the gate logits are
       :math:`\alpha_{ij} + \pi_{ij}` with a constant (no-gradient) prior
       :math:`\pi_{ij} = \tau(\cos(P_i, P_j) - 1) + \kappa\, z(\cos(x_i, x_j))`
       refreshed every epoch (:meth:`GatedAdjacency.set_logit_prior`):
       :math:`P` is an exponential moving average (``prior_momentum``) of the
       model's own sharpened (``prior_temperature``) predicted class
       distributions, with the labels on the training nodes, and :math:`z`
       the standardized feature cosine of the endpoints (``prior_features``,
       clipped to 3). Within a row, edges whose endpoints are predicted in
       different classes lose first.
    6. ``gate_lr`` small (the free logits stay a small correction of the
       prior), while the thresholds :math:`\beta` move at ``threshold_lr``.
    7. ``gate_self_loops=False``: self-loops stay out of the competitions and
       always on (see :class:`~graphsparse.graph.GatedAdjacency`), so a node
       never loses its own features.
    8. ``min_sparsity=0.2``: the sparsity level is chosen on validation
       accuracy among checkpoints with at least 20% of the edges pruned.

    On a graph with many wrong edges the teacher's predictions are misled by
    them and distillation keeps them; the ``"denoise"`` entry of
    :data:`RECIPES` (no distillation, row and column competitions) lets the
    agreement prior remove them instead, and :func:`select_structure` picks
    between the two on validation accuracy.

    With ``prior=None``, ``distill=0``, ``unit_init=False``, ``init_noise=0``,
    ``gate_start=0``, ``gate_self_loops=True`` and ``threshold_lr=None`` this
    is the plain joint training of the paper.

    Args:
        x (Tensor): ``[N, F]`` node features.
        edge_index (LongTensor): ``[2, E]`` candidate edges.
        y (LongTensor): ``[N]`` labels (any value where unlabelled).
        train_mask, val_mask, test_mask (BoolTensor): ``[N]`` node masks.
        config (dict): overrides of :data:`STRUCTURE_DEFAULTS`.
        seed (int): seeds the initialization and dropout.
        progress (bool): show a progress bar with loss, accuracy and sparsity.
    """
    cfg = {**STRUCTURE_DEFAULTS, **(config or {})}
    unknown = set(cfg) - set(STRUCTURE_DEFAULTS)
    if unknown:
        raise ValueError(f"unknown structure-learning setting(s) {sorted(unknown)}; "
                         f"valid ones: {sorted(STRUCTURE_DEFAULTS)}")
    if cfg["distill"] and cfg["gate_start"] < 1:
        raise ValueError(f"'distill' ({cfg['distill']}) needs 'gate_start' >= 1: the teacher is "
                         f"the model's prediction after the first gate_start epochs; set "
                         f"gate_start or distill=0")
    seed_everything(seed)
    num_classes = int(y[train_mask | val_mask].max()) + 1
    model = build_structure_model(x.size(1), num_classes, edge_index, x.size(0), cfg).to(x.device)
    adj = model.adjacency
    thresholds = [b for b in (adj.beta_row, adj.beta_col) if b is not None]
    ids = {id(b) for b in thresholds}
    logit_params = [q for q in model.gate_parameters() if id(q) not in ids]
    thr_lr = cfg["gate_lr"] if cfg["threshold_lr"] is None else cfg["threshold_lr"]
    thr_scale = []
    if cfg["degree_scaled_thresholds"] and adj.scorer is None:
        # Adam moves every threshold by about the same step, so rows of two
        # candidates would lose a neighbour as early as hubs lose one of a
        # hundred; scaling the steps by log(size) prunes redundant edges first.
        cand0 = adj.edge_index[:, adj.edge_index[0] != adj.edge_index[1]] \
            if not adj.gate_self_loops else adj.edge_index
        for b, idx in ((adj.beta_row, cand0[1]), (adj.beta_col, cand0[0])):
            if b is not None:
                size = torch.bincount(idx, minlength=adj.num_nodes).clamp_min(1).to(b.dtype)
                lg = size.log()
                thr_scale.append((b, lg / lg[lg > 0].mean()))
    if cfg["init_noise"] and adj.alpha is not None:
        with torch.no_grad():
            adj.alpha.normal_(0.0, cfg["init_noise"])
    opt = torch.optim.Adam([
        dict(params=list(model.weight_parameters()), lr=cfg["lr"], weight_decay=cfg["weight_decay"]),
        dict(params=logit_params, lr=cfg["gate_lr"], weight_decay=0.0),
        dict(params=thresholds, lr=thr_lr, weight_decay=0.0),
    ])
    use_x = model.adjacency.scorer is not None
    cand = adj.edge_index
    is_loop = cand[0] == cand[1]
    feat_prior = 0.0
    if cfg["prior"] == "agreement" and cfg["prior_features"]:
        fc = F.cosine_similarity(x[cand[0]], x[cand[1]], dim=-1)
        mu, sd = fc[~is_loop].mean(), fc[~is_loop].std().clamp_min(1e-12)
        feat_prior = cfg["prior_features"] * ((fc - mu) / sd).clamp(-3.0, 3.0)
    gate_params = list(model.gate_parameters())
    ema: Optional[Tensor] = None
    train_onehot = F.one_hot(y[train_mask], num_classes).to(x.dtype)
    best: Optional[Dict[str, Any]] = None
    history: List[Dict[str, float]] = []
    epochs = range(cfg["epochs"])
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(epochs, desc=desc, leave=False)
        epochs = bar
    t0 = time.perf_counter()
    start = cfg["gate_start"]
    teacher: Optional[Tensor] = None
    for epoch in epochs:
        gate_on = epoch >= start
        for prm in gate_params:
            prm.requires_grad_(gate_on)
        model.train()
        opt.zero_grad()
        out = model(x)
        loss = F.cross_entropy(out[train_mask], y[train_mask])
        if teacher is not None:
            # a sum over nodes, like the penalty: mu does not depend on N
            loss = loss + cfg["distill"] * F.kl_div(out.log_softmax(-1), teacher, reduction="sum")
        t = epoch - start + 1
        lam = 0.0 if not gate_on else cfg["lam"] * (min(1.0, t / cfg["warmup"]) if cfg["warmup"] else 1.0)
        pen = model.penalty(cfg["p"]) if lam > 0 else loss.new_zeros(())
        (loss + lam * pen).backward()
        old = [b.detach().clone() for b, _ in thr_scale] if gate_on else []
        opt.step()
        with torch.no_grad():
            for (b, scale), b_old in zip(thr_scale, old):
                b.copy_(b_old + scale * (b - b_old))

        model.eval()
        with torch.no_grad():
            out = model(x)
            values = model.adjacency.edge_values(x if use_x else None)
        sparsity = adj.sparsity_of(values)
        rec = dict(epoch=epoch, loss=loss.item(), penalty=pen.item(),
                   train_acc=_accuracy(out, y, train_mask), val_acc=_accuracy(out, y, val_mask),
                   test_acc=_accuracy(out, y, test_mask), edge_sparsity=sparsity)
        history.append(rec)
        if sparsity >= cfg["min_sparsity"] and (best is None or rec["val_acc"] >= best["val_acc"]):
            best = dict(rec, state=copy.deepcopy(model.state_dict()), values=values.clone())
        if cfg["distill"] and epoch + 1 == start:
            teacher = out.softmax(-1)
        with torch.no_grad():
            if cfg["prior"] == "agreement":
                # Predicted class distributions (train nodes: their labels),
                # smoothed over epochs; the prior of the next epoch's gate.
                prob = (out / cfg["prior_temperature"]).softmax(-1)
                prob[train_mask] = train_onehot
                m = cfg["prior_momentum"]
                ema = prob if ema is None else m * ema + (1 - m) * prob
                if epoch + 1 >= start:
                    agree = F.cosine_similarity(ema[cand[0]], ema[cand[1]], dim=-1)
                    prior = cfg["prior_scale"] * (agree - 1) + feat_prior
                    prior[is_loop] = prior.max()
                    adj.set_logit_prior(prior)
        if bar is not None:
            bar.set_postfix(loss=f"{rec['loss']:.3f}", val=f"{rec['val_acc']:.3f}",
                            sparsity=f"{sparsity:.2f}", refresh=False)
    seconds = (time.perf_counter() - t0) / max(cfg["epochs"], 1)
    if best is None:  # never reached min_sparsity: fall back to the last epoch
        best = dict(history[-1], state=copy.deepcopy(model.state_dict()), values=values.clone())
    model.load_state_dict(best["state"])
    return FitResult(best["val_acc"], best["test_acc"], best["epoch"], best["edge_sparsity"],
                     seconds, history, model, best["values"])


def recipe_config(name: str, config: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """The full settings of recipe ``name``: ``{**STRUCTURE_DEFAULTS,
    **RECIPES[name], **config}``."""
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; valid ones: {sorted(RECIPES)}")
    return {**STRUCTURE_DEFAULTS, **RECIPES[name], **(config or {})}


def select_structure(x: Tensor, edge_index: Tensor, y: Tensor, train_mask: Tensor,
                     val_mask: Tensor, test_mask: Optional[Tensor] = None,
                     config: Optional[Dict[str, Any]] = None, seed: int = 0,
                     recipes: Sequence[str] = tuple(RECIPES), progress: bool = False,
                     desc: str = "structure") -> FitResult:
    """Runs :func:`fit_structure` once per recipe of :data:`RECIPES` (with
    :func:`recipe_config`, same seed) and
    returns the run of best validation accuracy (ties: the first recipe);
    its name is in ``result.recipe``. Test accuracy plays no part.

    On a clean graph ``"preserve"`` wins (Cora, CiteSeer); on a graph with
    many random edges ``"denoise"`` does (see the README)."""
    if not recipes:
        raise ValueError("'recipes' must name at least one of " f"{sorted(RECIPES)}")
    best: Optional[FitResult] = None
    for name in recipes:
        res = fit_structure(x, edge_index, y, train_mask, val_mask, test_mask,
                            config=recipe_config(name, config), seed=seed,
                            progress=progress, desc=f"{desc} ({name})")
        res.recipe = name
        if best is None or res.val_acc > best.val_acc:
            best = res
    return best


class PlainGCN(nn.Module):
    r"""The baseline GCN on a fixed graph: two PyG
    :class:`~torch_geometric.nn.GCNConv` with dropout before each, the graph
    stored with the model. ``normalization="sym"``: GCNConv's own
    :math:`D^{-1/2}(A+I)D^{-1/2}`; ``"row"``: :math:`D^{-1}(A+I)`.

    Shapes: ``x`` ``[N, in_channels]`` -> logits ``[N, out_channels]``.
    """

    def __init__(self, in_channels: int, hidden_channels: int, out_channels: int,
                 edge_index: Tensor, num_nodes: int, dropout: float = 0.5,
                 normalization: str = "sym") -> None:
        super().__init__()
        from torch_geometric.nn import GCNConv
        from torch_geometric.utils import add_remaining_self_loops
        if normalization not in ("sym", "row"):
            raise ValueError(f"'PlainGCN' expects 'normalization' 'sym' or 'row' "
                             f"(got {normalization!r})")
        self.dropout, self.normalization = dropout, normalization
        weight = None
        if normalization == "row":
            edge_index, _ = add_remaining_self_loops(edge_index, num_nodes=num_nodes)
            weight = row_norm(edge_index, None, num_nodes)
        self.register_buffer("edge_index", edge_index)
        self.register_buffer("edge_weight", weight)
        norm = normalization == "sym"
        self.convs = nn.ModuleList([GCNConv(in_channels, hidden_channels, normalize=norm),
                                    GCNConv(hidden_channels, out_channels, normalize=norm)])

    def forward(self, x: Tensor) -> Tensor:
        for i, conv in enumerate(self.convs):
            x = F.dropout(x, self.dropout, self.training)
            x = conv(x, self.edge_index, self.edge_weight)
            if i == 0:
                x = x.relu()
        return x


#: Kipf & Welling's GCN setting.
GCN_DEFAULTS: Dict[str, Any] = dict(hidden=16, dropout=0.5, lr=0.01, weight_decay=5e-4, epochs=200,
                                    normalization="sym")


def fit_gcn(x: Tensor, edge_index: Tensor, y: Tensor, train_mask: Tensor, val_mask: Tensor,
            test_mask: Optional[Tensor] = None, config: Optional[Dict[str, Any]] = None,
            seed: int = 0) -> FitResult:
    r"""The baseline: PyG's :class:`~torch_geometric.nn.GCNConv` (2 layers) on
    the fixed graph, same model selection as :func:`fit_structure`.
    ``config["normalization"]``: ``"sym"`` (GCNConv's own
    :math:`D^{-1/2}(A+I)D^{-1/2}`, Kipf & Welling) or ``"row"``
    (:math:`D^{-1}(A+I)`, the mean over the in-coming neighbours and the node)."""
    cfg = {**GCN_DEFAULTS, **(config or {})}
    seed_everything(seed)
    num_classes = int(y[train_mask | val_mask].max()) + 1
    model = PlainGCN(x.size(1), cfg["hidden"], num_classes, edge_index, x.size(0),
                     dropout=cfg["dropout"], normalization=cfg["normalization"]).to(x.device)

    def forward(training: bool) -> Tensor:
        model.train(training)
        return model(x)

    opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    best, history = None, []
    t0 = time.perf_counter()
    for epoch in range(cfg["epochs"]):
        opt.zero_grad()
        loss = F.cross_entropy(forward(True)[train_mask], y[train_mask])
        loss.backward()
        opt.step()
        with torch.no_grad():
            out = forward(False)
        rec = dict(epoch=epoch, loss=loss.item(), train_acc=_accuracy(out, y, train_mask),
                   val_acc=_accuracy(out, y, val_mask), test_acc=_accuracy(out, y, test_mask),
                   edge_sparsity=0.0)
        history.append(rec)
        if best is None or rec["val_acc"] >= best["val_acc"]:
            best = rec
    seconds = (time.perf_counter() - t0) / max(cfg["epochs"], 1)
    return FitResult(best["val_acc"], best["test_acc"], best["epoch"], 0.0, seconds, history, model)
