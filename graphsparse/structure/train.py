"""Training a GCN with a learned sparse adjacency (the recipe of
:class:`~graphsparse.structure.StructureLearner` in a ready-made loop), and
the plain GCN baseline, with model selection on validation accuracy."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..graph import (
    EdgeScorer,
    GatedAdjacency,
    GatedDAGNN,
    GatedGCN,
    GatedResGCN,
    knn_candidates,
    row_norm,
)
from ..graph.adjacency import NORMALIZATIONS
from ..utils import seed_everything
from ..utils.checkpoint import atomic_save, load_checkpoint, rng_state, set_rng_state
from ..utils.interrupt import DeferredInterrupt, TrainingInterrupted
from .learner import LEARNER_DEFAULTS, StructureLearner

#: Settings of the model and its optimizer in :func:`fit_structure`.
MODEL_DEFAULTS: Dict[str, Any] = dict(
    architecture="gcn",    # "gcn": GatedGCN; "residual": GatedResGCN (a skip path per node);
                           # "dagnn": GatedDAGNN (10 hops of an MLP's output)
    hidden=16,             # Kipf & Welling's GCN
    dropout=0.5,
    lr=0.01,               # Adam, model weights
    weight_decay=5e-4,     # on model weights only
    epochs=300,
)

#: Settings of the :class:`~graphsparse.graph.GatedAdjacency` in :func:`fit_structure`.
ADJACENCY_DEFAULTS: Dict[str, Any] = dict(
    groups="row",          # row competition: a node's in-coming neighbours compete
    normalization="row",   # see the README: pruning into high-degree nodes is cheap under row sums
    num_iters=10,          # Sinkhorn iterations
    marginals="uniform",   # Sinkhorn's target sums: "uniform" (doubly stochastic) or "degree"
                           # (the input degrees, in GCN's frame: starts at GCN's matrix)
    symmetric=False,
    gate_self_loops=False, # False: self-loops always on, out of the competitions
    unit_init=True,        # initial adjacency = the candidate graph with unit weights
    init_noise=0.1,        # std of Gaussian noise on the initial logits: breaks ties of equal rows
    scorer=None,           # None: free per-edge logits; "dot" / "mlp": an EdgeScorer
    scorer_hidden=64,
    identity_mix=None,     # t0: learned (1 - t) I + t S after normalization; None: off
    knn=0,                 # k: + each node's k nearest neighbours by feature cosine as
                           # candidate edges (knn_candidates), so edges can be added; 0: none
)

#: Every setting of :func:`fit_structure`: model, adjacency and learner
#: (:data:`~graphsparse.structure.learner.LEARNER_DEFAULTS`); the README,
#: "Structure learning", gives the reasons.
STRUCTURE_DEFAULTS: Dict[str, Any] = {**MODEL_DEFAULTS, **ADJACENCY_DEFAULTS, **LEARNER_DEFAULTS}

#: Named overrides of :data:`STRUCTURE_DEFAULTS`, among which
#: :func:`select_structure` chooses on validation accuracy. ``"preserve"`` (the
#: defaults) prunes what does not change the predictions (self-distillation);
#: ``"denoise"`` lets the agreement prior remove the edges that mislead them
#: (no distillation, whose teacher would keep the misled predictions).
#:
#: The ``"+residual"`` recipes train the same gate inside
#: :class:`~graphsparse.graph.GatedResGCN` with Platonov et al.'s optimizer
#: settings (Adam 1e-3, no weight decay, dropout 0.2; width 64 for a CPU):
#: every node keeps a skip path around the aggregation, which is what wins on
#: heterophilous graphs. These four (:data:`DEFAULT_RECIPES`) are the whole
#: validation budget of :func:`select_structure` by default (at most 8
#: configurations per dataset and seed, see the README).
#:
#: The ``"+dagnn"`` recipes train the gate inside
#: :class:`~graphsparse.graph.GatedDAGNN` (10 propagation hops of an MLP's
#: output) with DAGNN's published settings (width 64, dropout 0.8, weight
#: decay 5e-3, Adam 0.01), 500 epochs and the gate from epoch 150 (DAGNN's
#: validation plateau comes later than the GCN's); ``"preserve+dagnn"``
#: doubles the penalty weight (4e-3: at 2e-3 DAGNN's gates reached 22-26%
#: zeros on Cora). Schedule and penalty were picked on Cora (README). They
#: are opt-in: a run costs about 5x a GCN's (README).
_DENOISE = dict(distill=0.0, groups="both", unit_init=False, init_noise=0.0, lam=1e-3,
                gate_start=50, epochs=200)
_RESIDUAL = dict(architecture="residual", hidden=64, dropout=0.2, lr=1e-3, weight_decay=0.0)
_DAGNN = dict(architecture="dagnn", hidden=64, dropout=0.8, weight_decay=5e-3, lr=0.01,
              epochs=500, gate_start=150)
RECIPES: Dict[str, Dict[str, Any]] = {
    "preserve": {},
    "denoise": _DENOISE,
    "preserve+residual": _RESIDUAL,
    "denoise+residual": {**_DENOISE, **_RESIDUAL},
    "preserve+dagnn": {**_DAGNN, "lam": 4e-3},
    "denoise+dagnn": {**_DENOISE, **_DAGNN},
}
#: The recipes :func:`select_structure` and ``graphsparse learn`` try by default.
DEFAULT_RECIPES = ("preserve", "denoise", "preserve+residual", "denoise+residual")
ARCHITECTURES = {"gcn": GatedGCN, "residual": GatedResGCN, "dagnn": GatedDAGNN}


@dataclass
class FitResult:
    """What a training run produced (at the checkpoint selected on validation)."""
    val_acc: Optional[float]
    test_acc: Optional[float]
    epoch: int
    edge_sparsity: float
    seconds_per_epoch: float
    history: List[Dict[str, Any]] = field(default_factory=list)
    model: Optional[nn.Module] = None
    edge_values: Optional[Tensor] = None   # [E_cand] at the selected checkpoint
    recipe: Optional[str] = None           # the RECIPES entry chosen by select_structure
    adjacency: Optional[GatedAdjacency] = None

    def summary(self) -> Dict[str, Any]:
        return dict(val_acc=self.val_acc, test_acc=self.test_acc, epoch=self.epoch,
                    edge_sparsity=self.edge_sparsity, seconds_per_epoch=self.seconds_per_epoch,
                    recipe=self.recipe)


def _accuracy(logits: Tensor, y: Tensor, mask: Optional[Tensor]) -> Optional[float]:
    if mask is None or int(mask.sum()) == 0:
        return None
    return float((logits[mask].argmax(-1) == y[mask]).float().mean())


def _split(config: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    cfg = {**STRUCTURE_DEFAULTS, **(config or {})}
    unknown = set(cfg) - set(STRUCTURE_DEFAULTS)
    if unknown:
        raise ValueError(f"unknown structure-learning setting(s) {sorted(unknown)}; "
                         f"valid ones: {sorted(STRUCTURE_DEFAULTS)}")
    epochs = cfg["epochs"]
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"'epochs' must be an integer >= 1 (got {epochs!r})")
    return cfg


def build_adjacency(edge_index: Tensor, num_nodes: int, num_features: int,
                    config: Dict[str, Any], x: Optional[Tensor] = None) -> GatedAdjacency:
    """The :class:`~graphsparse.graph.GatedAdjacency` described by ``config``
    (the keys of :data:`ADJACENCY_DEFAULTS`); ``knn > 0`` needs the node
    features ``x`` ``[N, F]`` (the k-nearest-neighbour candidates)."""
    scorer = None
    if config["scorer"] is not None:
        scorer = EdgeScorer(num_features, config["scorer_hidden"], kind=config["scorer"])
    candidates = None
    k = config.get("knn", 0)
    if isinstance(k, bool) or not isinstance(k, int) or k < 0:
        raise ValueError(f"'knn' must be an integer >= 0 (got {k!r})")
    if k:
        if x is None:
            raise ValueError("'knn' > 0 needs the node features: pass 'x' to build_adjacency")
        candidates = knn_candidates(x.to_dense() if x.layout != torch.strided else x,
                                    min(k, num_nodes - 1)).to(edge_index.device)
    return GatedAdjacency(edge_index, num_nodes, candidates=candidates, groups=config["groups"],
                          normalization=config["normalization"], num_iters=config["num_iters"],
                          symmetric=config["symmetric"], scorer=scorer,
                          gate_self_loops=config["gate_self_loops"],
                          unit_init=config["unit_init"], init_noise=config["init_noise"],
                          identity_mix=config.get("identity_mix"),
                          marginals=config.get("marginals", "uniform"))


def build_structure_model(num_features: int, num_classes: int, edge_index: Tensor,
                          num_nodes: int, config: Dict[str, Any],
                          x: Optional[Tensor] = None) -> GatedGCN:
    """The :class:`~graphsparse.graph.GatedGCN` (``architecture="gcn"``),
    :class:`~graphsparse.graph.GatedResGCN` (``"residual"``) or
    :class:`~graphsparse.graph.GatedDAGNN` (``"dagnn"``) described by
    ``config``, on :func:`build_adjacency`."""
    adj = build_adjacency(edge_index, num_nodes, num_features, config, x)
    arch = config["architecture"]
    if arch not in ARCHITECTURES:
        raise ValueError(f"'architecture' must be one of {sorted(ARCHITECTURES)} (got {arch!r})")
    return ARCHITECTURES[arch](num_features, config["hidden"], num_classes, num_layers=2,
                               dropout=config["dropout"], adjacency=adj)


def fit_structure(x: Tensor, edge_index: Tensor, y: Tensor, train_mask: Tensor,
                  val_mask: Optional[Tensor], test_mask: Optional[Tensor] = None,
                  config: Optional[Dict[str, Any]] = None, seed: int = 0,
                  progress: bool = False, desc: str = "structure", *,
                  model: Optional[Callable[[int, int], nn.Module]] = None,
                  checkpoint: Union[str, Path, None] = None, resume: bool = False,
                  checkpoint_every: int = 25) -> FitResult:
    r"""Trains a GCN and its learned adjacency jointly on

    .. math::
        \mathcal{L}_{CE}(\text{train}) + \mu \sum_{v} \mathrm{KL}(T_v \,\|\, P_v)
        + \lambda_t \sum_i \mathcal{R}(A_{i,:}) + \mathcal{R}(A_{:,i}),

    with Adam (separate learning rates for the model weights, the gate logits
    and the thresholds), and keeps the checkpoint of best validation accuracy
    among those with at least ``min_sparsity`` of the gated candidate edges
    exactly zero. Test accuracy is only recorded, never used for selection.

    This is the loop of ``examples/pyg_drop_in.py``, with a
    :class:`~graphsparse.structure.StructureLearner` holding the recipe (its
    docstring explains each part; the README gives the reasons for the
    defaults, :data:`STRUCTURE_DEFAULTS`). The caller's global random state is
    left as it was.

    Args:
        x (Tensor): ``[N, F]`` node features.
        edge_index (LongTensor): ``[2, E]`` candidate edges.
        y (LongTensor): ``[N]`` labels (any value where unlabelled).
        train_mask, val_mask, test_mask (BoolTensor): ``[N]`` node masks; with
            no validation node the last epoch is kept.
        config (dict): overrides of :data:`STRUCTURE_DEFAULTS`.
        seed (int): seeds the initialization and dropout.
        progress (bool): show a progress bar with loss, accuracy and sparsity.
        model (callable, optional): ``model(num_features, num_classes)``
            builds the model, called as ``model(x, edge_index, edge_weight)``
            with the learned weights (default: the :class:`GatedGCN` layers of
            ``hidden``/``dropout``, sharing the adjacency).
        checkpoint (path, optional): a file to which the run's state is saved
            every ``checkpoint_every`` epochs, at the end, and when Ctrl-C
            stops it (at the end of the current epoch; a second Ctrl-C stops
            at once). ``resume=True`` continues from it; the resumed run ends
            bit-identical to an uninterrupted one on the CPU.
    """
    cfg = _split(config)
    saved_rng = rng_state()
    try:
        seed_everything(seed)
        return _fit(x, edge_index, y, train_mask, val_mask, test_mask, cfg, progress, desc,
                    model, None if checkpoint is None else Path(checkpoint), resume,
                    checkpoint_every)
    finally:
        set_rng_state(saved_rng)


def _fit(x, edge_index, y, train_mask, val_mask, test_mask, cfg, progress, desc, model_fn,
         checkpoint, resume, checkpoint_every) -> FitResult:
    num_classes = int(y[train_mask | (val_mask if val_mask is not None else train_mask)].max()) + 1
    model: nn.Module
    if model_fn is None:
        gcn = build_structure_model(x.size(1), num_classes, edge_index, x.size(0), cfg, x)
        adj = gcn._require_adjacency()
        model, weights = gcn, list(gcn.weight_parameters())
    else:
        adj = build_adjacency(edge_index, x.size(0), x.size(1), cfg, x).to(x.device)
        model = model_fn(x.size(1), num_classes)
        weights = list(model.parameters())
    model = model.to(x.device)
    learner = StructureLearner(adj, y, train_mask, x=x, model=model,
                               **{k: cfg[k] for k in LEARNER_DEFAULTS})
    opt = torch.optim.Adam([dict(params=weights, lr=cfg["lr"], weight_decay=cfg["weight_decay"]),
                            *learner.param_groups()])
    x_adj = x if adj.scorer is not None else None
    history: List[Dict[str, Any]] = []
    if resume and checkpoint is not None and checkpoint.exists():
        state = load_checkpoint(checkpoint, map_location=x.device)
        if state.get("config") != cfg:
            raise ValueError(f"the checkpoint {checkpoint} was written with other settings; "
                             f"start afresh without resume, or pass the same settings")
        model.load_state_dict(state["model"])
        adj.load_state_dict(state["adjacency"])
        opt.load_state_dict(state["optimizer"])
        learner.load_state_dict(state["learner"])
        history = list(state["history"])
        set_rng_state(state["rng"])

    def save() -> None:
        if checkpoint is not None:
            checkpoint.parent.mkdir(parents=True, exist_ok=True)
            atomic_save(dict(config=cfg, model=model.state_dict(), adjacency=adj.state_dict(),
                             optimizer=opt.state_dict(), learner=learner.state_dict(),
                             history=history, rng=rng_state()), checkpoint)

    epochs = range(learner.epoch, cfg["epochs"])
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(epochs, desc=desc, leave=False, total=cfg["epochs"], initial=learner.epoch)
        epochs = bar
    t0 = time.perf_counter()
    with DeferredInterrupt(enabled=checkpoint is not None) as stop:
        for epoch in epochs:
            model.train()
            opt.zero_grad()
            out = model(x, *adj(x_adj))
            loss = F.cross_entropy(out[train_mask], y[train_mask]) + learner.loss(out)
            loss.backward()
            opt.step()

            model.eval()
            with torch.no_grad():
                out = model(x, *adj(x_adj))
            val_acc = _accuracy(out, y, val_mask)
            learner.step(out, val_acc)
            last = learner.last
            assert last is not None                 # set by step()
            rec = dict(epoch=epoch, loss=float(loss.detach()), lam=learner.lam,
                       train_acc=_accuracy(out, y, train_mask), val_acc=val_acc,
                       test_acc=_accuracy(out, y, test_mask),
                       edge_sparsity=last["sparsity"])
            history.append(rec)
            if bar is not None:
                bar.set_postfix(loss=f"{rec['loss']:.3f}",
                                val="-" if val_acc is None else f"{val_acc:.3f}",
                                sparsity=f"{rec['edge_sparsity']:.2f}", refresh=False)
            if stop.requested:
                save()
                raise TrainingInterrupted(str(checkpoint), epoch + 1)
            if checkpoint_every and (epoch + 1) % checkpoint_every == 0:
                save()
    save()
    seconds = (time.perf_counter() - t0) / max(len(range(cfg["epochs"])), 1)
    best = learner.restore()
    rec = history[best["epoch"]]
    return FitResult(rec["val_acc"], rec["test_acc"], best["epoch"], best["sparsity"],
                     seconds, history, model, best["values"], adjacency=adj)


def recipe_config(name: str, config: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """The full settings of recipe ``name``: ``{**STRUCTURE_DEFAULTS,
    **RECIPES[name], **config}``."""
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; valid ones: {sorted(RECIPES)}")
    return {**STRUCTURE_DEFAULTS, **RECIPES[name], **(config or {})}


def config_name(recipe: str, normalization: Optional[str] = None) -> str:
    """The name :func:`select_structure` gives a configuration: the recipe,
    or ``"recipe/normalization"`` when the normalization is chosen too."""
    return recipe if normalization is None else f"{recipe}/{normalization}"


def selected_config(name: str, config: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """The full settings of a configuration named by :func:`config_name`
    (``result.recipe`` of :func:`select_structure`)."""
    recipe, _, normalization = name.partition("/")
    over = dict(config or {})
    if normalization:
        over["normalization"] = normalization
    return recipe_config(recipe, over)


def select_structure(x: Tensor, edge_index: Tensor, y: Tensor, train_mask: Tensor,
                     val_mask: Optional[Tensor], test_mask: Optional[Tensor] = None,
                     config: Optional[Dict[str, Any]] = None, seed: int = 0,
                     recipes: Sequence[str] = DEFAULT_RECIPES, progress: bool = False,
                     desc: str = "structure", *,
                     normalizations: Sequence[Optional[str]] = (None,),
                     checkpoint_dir: Union[str, Path, None] = None,
                     resume: bool = False) -> FitResult:
    """Runs :func:`fit_structure` once per recipe of ``recipes`` (names of
    :data:`RECIPES`; default :data:`DEFAULT_RECIPES`, the four GCN and
    residual recipes) (with
    :func:`recipe_config`, same seed) and returns the run of best validation
    accuracy (ties, or no validation nodes: the first recipe); its name is in
    ``result.recipe``. Test accuracy plays no part. With ``normalizations``
    (e.g. ``("row", "sym")``) every recipe runs under each of them and the
    normalization is chosen too: ``result.recipe`` is then
    ``"recipe/normalization"`` (:func:`config_name`; :func:`selected_config`
    gives its settings). The four recipes under row and sym normalization are
    8 configurations, the documented validation budget (see the README). With ``checkpoint_dir``
    every recipe checkpoints to ``<checkpoint_dir>/<recipe>.pt`` (see
    :func:`fit_structure`); ``resume=True`` continues from there, recipes
    already finished included.

    On a clean graph ``"preserve"`` wins (Cora, CiteSeer); on a graph with
    many random edges ``"denoise"`` does (see the README)."""
    if not recipes:
        raise ValueError("'recipes' must name at least one of " f"{sorted(RECIPES)}")
    normalizations = tuple(normalizations)
    if not normalizations or any(n is not None and n not in NORMALIZATIONS
                                 for n in normalizations):
        raise ValueError(f"'normalizations' must hold None or names among {list(NORMALIZATIONS)} "
                         f"(got {list(normalizations)!r})")
    configs = {config_name(r, n): selected_config(config_name(r, n), config)
               for r in recipes for n in normalizations}
    best: Optional[FitResult] = None
    for name, cfg in configs.items():
        ckpt = (None if checkpoint_dir is None
                else Path(checkpoint_dir) / f"{name.replace('/', '-')}.pt")
        res = fit_structure(x, edge_index, y, train_mask, val_mask, test_mask,
                            config=cfg, seed=seed, progress=progress, desc=f"{desc} ({name})",
                            checkpoint=ckpt, resume=resume)
        res.recipe = name
        if best is None or (res.val_acc is not None and best.val_acc is not None
                            and res.val_acc > best.val_acc):
            best = res
    assert best is not None
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
    (:math:`D^{-1}(A+I)`, the mean over the in-coming neighbours and the node).
    With no validation node the last epoch is kept, as in :func:`fit_structure`."""
    cfg = {**GCN_DEFAULTS, **(config or {})}
    epochs = cfg["epochs"]
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"'epochs' must be an integer >= 1 (got {epochs!r})")
    seed_everything(seed)
    num_classes = int(y[train_mask | val_mask].max()) + 1
    model = PlainGCN(x.size(1), cfg["hidden"], num_classes, edge_index, x.size(0),
                     dropout=cfg["dropout"], normalization=cfg["normalization"]).to(x.device)

    def forward(training: bool) -> Tensor:
        model.train(training)
        return model(x)

    opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    best: Optional[Dict[str, Any]] = None
    history: List[Dict[str, Any]] = []
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
        if best is None or rec["val_acc"] is None or rec["val_acc"] >= best["val_acc"]:
            best = rec
    assert best is not None                         # epochs >= 1
    seconds = (time.perf_counter() - t0) / max(cfg["epochs"], 1)
    return FitResult(best["val_acc"], best["test_acc"], best["epoch"], 0.0, seconds, history, model)
