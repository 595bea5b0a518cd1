"""Training a GCN with a learned sparse adjacency, and the plain GCN baseline,
with model selection on validation accuracy."""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..graph import EdgeScorer, GatedAdjacency, GatedGCN
from ..utils import seed_everything

#: Defaults of the learned-structure GCN (see the README, "Structure learning").
STRUCTURE_DEFAULTS: Dict[str, Any] = dict(
    hidden=16,             # Kipf & Welling's GCN
    dropout=0.5,
    lr=0.01,               # Adam, convolution weights
    weight_decay=5e-4,     # on convolution weights only
    epochs=200,
    groups="both",         # row and column competition
    normalization="sinkhorn",
    num_iters=10,          # Sinkhorn iterations
    symmetric=False,
    scorer=None,           # None: free per-edge logits; "dot" / "mlp" / "cosine": an EdgeScorer
    scorer_hidden=64,
    gate_lr=0.01,          # Adam, gate parameters (logits or scorer, thresholds)
    lam=1e-3,              # penalty weight lambda
    warmup=50,             # epochs over which lambda ramps up linearly from 0
    p=0.5,
    min_sparsity=0.0,      # model selection only among checkpoints at least this sparse
)


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

    def summary(self) -> Dict[str, Any]:
        return dict(val_acc=self.val_acc, test_acc=self.test_acc, epoch=self.epoch,
                    edge_sparsity=self.edge_sparsity, seconds_per_epoch=self.seconds_per_epoch)


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
                         symmetric=config["symmetric"], scorer=scorer)
    return GatedGCN(num_features, config["hidden"], num_classes, num_layers=2,
                    dropout=config["dropout"], adjacency=adj)


def fit_structure(x: Tensor, edge_index: Tensor, y: Tensor, train_mask: Tensor,
                  val_mask: Tensor, test_mask: Optional[Tensor] = None,
                  config: Optional[Dict[str, Any]] = None, seed: int = 0,
                  progress: bool = False, desc: str = "structure") -> FitResult:
    r"""Trains a GCN and its learned adjacency jointly on

    .. math::
        \mathcal{L}_{CE}(\text{train}) + \lambda_t \sum_i
        \mathcal{R}(A_{i,:}) + \mathcal{R}(A_{:,i}),

    with :math:`\lambda_t` ramped up linearly over ``warmup`` epochs, Adam with
    separate learning rates for the convolution weights and the gate, and
    keeps the checkpoint of best validation accuracy (ties: the later, sparser
    one) among those with at least ``min_sparsity`` of the candidate edges
    exactly zero. Test accuracy is only recorded, never used for selection.

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
    seed_everything(seed)
    num_classes = int(y[train_mask | val_mask].max()) + 1
    model = build_structure_model(x.size(1), num_classes, edge_index, x.size(0), cfg).to(x.device)
    opt = torch.optim.Adam([
        dict(params=list(model.weight_parameters()), lr=cfg["lr"], weight_decay=cfg["weight_decay"]),
        dict(params=list(model.gate_parameters()), lr=cfg["gate_lr"], weight_decay=0.0),
    ])
    use_x = model.adjacency.scorer is not None
    best: Optional[Dict[str, Any]] = None
    history: List[Dict[str, float]] = []
    epochs = range(cfg["epochs"])
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(epochs, desc=desc, leave=False)
        epochs = bar
    t0 = time.perf_counter()
    for epoch in epochs:
        model.train()
        opt.zero_grad()
        out = model(x)
        loss = F.cross_entropy(out[train_mask], y[train_mask])
        lam = cfg["lam"] * (min(1.0, (epoch + 1) / cfg["warmup"]) if cfg["warmup"] else 1.0)
        pen = model.penalty(cfg["p"]) if lam > 0 else loss.new_zeros(())
        (loss + lam * pen).backward()
        opt.step()

        model.eval()
        with torch.no_grad():
            out = model(x)
            values = model.adjacency.edge_values(x if use_x else None)
        sparsity = float((values == 0).float().mean())
        rec = dict(epoch=epoch, loss=loss.item(), penalty=pen.item(),
                   train_acc=_accuracy(out, y, train_mask), val_acc=_accuracy(out, y, val_mask),
                   test_acc=_accuracy(out, y, test_mask), edge_sparsity=sparsity)
        history.append(rec)
        if sparsity >= cfg["min_sparsity"] and (best is None or rec["val_acc"] >= best["val_acc"]):
            best = dict(rec, state=copy.deepcopy(model.state_dict()), values=values.clone())
        if bar is not None:
            bar.set_postfix(loss=f"{rec['loss']:.3f}", val=f"{rec['val_acc']:.3f}",
                            sparsity=f"{sparsity:.2f}")
    seconds = (time.perf_counter() - t0) / max(cfg["epochs"], 1)
    if best is None:  # never reached min_sparsity: fall back to the last epoch
        best = dict(history[-1], state=copy.deepcopy(model.state_dict()), values=values.clone())
    model.load_state_dict(best["state"])
    return FitResult(best["val_acc"], best["test_acc"], best["epoch"], best["edge_sparsity"],
                     seconds, history, model, best["values"])


#: Kipf & Welling's GCN setting.
GCN_DEFAULTS: Dict[str, Any] = dict(hidden=16, dropout=0.5, lr=0.01, weight_decay=5e-4, epochs=200)


def fit_gcn(x: Tensor, edge_index: Tensor, y: Tensor, train_mask: Tensor, val_mask: Tensor,
            test_mask: Optional[Tensor] = None, config: Optional[Dict[str, Any]] = None,
            seed: int = 0) -> FitResult:
    """The baseline: PyG's :class:`~torch_geometric.nn.GCNConv` (2 layers,
    symmetric normalization with self-loops) on the fixed graph, same model
    selection as :func:`fit_structure`."""
    from torch_geometric.nn import GCNConv
    cfg = {**GCN_DEFAULTS, **(config or {})}
    seed_everything(seed)
    num_classes = int(y[train_mask | val_mask].max()) + 1
    convs = nn.ModuleList([GCNConv(x.size(1), cfg["hidden"]),
                           GCNConv(cfg["hidden"], num_classes)]).to(x.device)

    def forward(training: bool) -> Tensor:
        h = F.dropout(x, cfg["dropout"], training)
        h = F.relu(convs[0](h, edge_index))
        h = F.dropout(h, cfg["dropout"], training)
        return convs[1](h, edge_index)

    opt = torch.optim.Adam(convs.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
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
    return FitResult(best["val_acc"], best["test_acc"], best["epoch"], 0.0, seconds, history, convs)
