r"""The structure-learning recipe as parts of your own training loop.

:class:`StructureLearner` holds everything the recipe adds around a
:class:`~graphsparse.graph.GatedAdjacency`: the warm start, the penalty
weight's schedule, the self-distillation teacher, the agreement prior and
the sparsity-aware checkpoint choice. It is driven from any PyG training loop
in three calls (see :class:`StructureLearner`); :func:`fit_structure` is that
loop for a GCN.
"""
from __future__ import annotations

import warnings
from typing import Any, Dict, List, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..graph import GatedAdjacency, edge_cosine
from ..graph.weighted import check_weight_consumers
from ..utils.validation import check_choice

PRIORS = (None, "agreement")

#: The learner's settings and their defaults (the ``"preserve"`` recipe).
LEARNER_DEFAULTS: Dict[str, Any] = dict(
    lam=2e-3,              # penalty weight lambda
    p=0.5,                 # the paper's p-norm
    reduction="sum",       # "sum": the paper's sum over nodes; "mean": per node
    warmup=50,             # epochs over which lambda ramps up linearly from 0
    gate_start=100,        # epochs of model weights only (gate frozen at init, lambda = 0)
    distill=0.11,          # mu: weight of sum_v KL(teacher_v || model_v);
                           # teacher: the predictions at gate_start
    prior="agreement",     # None, or "agreement": logit prior from the model's own predictions
    prior_scale=6.0,       # tau: prior = tau * (cos(P_i, P_j) - 1), in [-tau, 0]
    prior_temperature=0.1, # softmax temperature of the predictions behind the prior (sharpens)
    prior_momentum=0.9,    # EMA of the predicted class distributions behind the prior
    prior_features=1.0,    # kappa: + kappa * z-score of the endpoints' feature cosine
    min_sparsity=0.2,      # checkpoints are chosen only among those at least this sparse
    gate_lr=1e-3,          # Adam lr of the free logits (or scorer)
    threshold_lr=0.02,     # Adam lr of the thresholds beta (None: gate_lr); sets the pruning pace
)


def _number(value: Any, name: str, low: float = 0.0, high: float = float("inf"),
            integer: bool = False) -> None:
    ok = not isinstance(value, bool) and isinstance(value, (int, float))
    ok = ok and (isinstance(value, int) or not integer) and low <= value <= high
    if not ok or value != value:
        kind = "an integer" if integer else "a finite number"
        raise ValueError(f"'StructureLearner' expects '{name}' to be {kind} in [{low}, {high}] "
                         f"(got {value!r})")


class StructureLearner:
    r"""The structure-learning recipe for any model that consumes learned edge
    weights, driven from your own training loop.

    The loss it adds, at epoch :math:`t`,

    .. math::
        \mu \sum_{v} \mathrm{KL}(T_v \,\|\, P_v)
        + \lambda_t \sum_i \mathcal{R}(A_{i,:}) + \mathcal{R}(A_{:,i}),
        \qquad \lambda_t = \lambda \min\big(1, \tfrac{t - t_0 + 1}{\text{warmup}}\big)
        \text{ for } t \ge t_0,

    and what each part does:

    * **warm start** (``gate_start`` :math:`t_0`): the gate parameters are frozen
      (``requires_grad=False``) and :math:`\lambda_t = 0` for the first
      epochs, so the gate starts from a model that already predicts;
    * **self-distillation** (``distill`` :math:`\mu`): the teacher :math:`T` is the
      model's own eval-mode prediction at :math:`t_0`, fixed. Pruning an edge
      then costs what it changes in the predictions of *all* nodes, not only
      of the few labelled ones. A sum over nodes, like the penalty;
    * **agreement prior** (``prior="agreement"``): the gate logits get a
      constant prior :math:`\pi_{ij} = \tau(\cos(P_i, P_j) - 1) + \kappa\,
      z(\cos(x_i, x_j))` (:meth:`GatedAdjacency.set_logit_prior`), from an
      exponential moving average (``prior_momentum``) of the sharpened
      (``prior_temperature``) predictions, labels on the training nodes, and
      the standardized feature cosine of the endpoints (clipped to 3): within
      a row, edges whose endpoints are predicted in different classes lose
      first;
    * **checkpoint choice** (``min_sparsity``): :meth:`step` keeps the state of
      the best validation score (ties: the later, sparser one) among the
      epochs with at least ``min_sparsity`` of the gated edges exactly zero
      (none reached it: the last epoch); :meth:`restore` loads it. Pruning
      starts only after the warm start and the penalty's ramp, so without the
      floor the best validation score usually falls on a dense epoch.

    In your loop (``model(x, edge_index, edge_weight)`` is any model that uses
    the weights: PyG layers that take ``edge_weight``, or any model wrapped
    in :class:`~graphsparse.graph.EdgeWeighted`)::

        adj = GatedAdjacency(data.edge_index, data.num_nodes, groups="row",
                             normalization="row", gate_self_loops=False,
                             unit_init=True, init_noise=0.1)
        learner = StructureLearner(adj, data.y, data.train_mask, x=data.x, model=model)
        opt = torch.optim.Adam([dict(params=model.parameters(), lr=0.01, weight_decay=5e-4),
                                *learner.param_groups()])
        for epoch in range(300):
            model.train(); opt.zero_grad()
            out = model(data.x, *adj())
            loss = F.cross_entropy(out[data.train_mask], data.y[data.train_mask])
            (loss + learner.loss(out)).backward()           # + distillation + penalty
            opt.step()
            model.eval()
            with torch.no_grad():
                out = model(data.x, *adj())
            learner.step(out, accuracy(out, data.val_mask))   # prior, teacher, checkpoint
        learner.restore()                                      # best checkpoint

    The adjacency is evaluated once per training step (the penalty reuses
    the forward pass) and once per evaluation (:meth:`step` reads
    :attr:`GatedAdjacency.last_edge_values`); the state is copied only when
    the checkpoint improves.

    Args:
        adjacency (GatedAdjacency): the learned adjacency.
        y (LongTensor): ``[N]`` labels (any value where unlabelled).
        train_mask (BoolTensor): ``[N]`` the training nodes (their labels
            enter the agreement prior).
        x (Tensor, optional): ``[N, F]`` node features: the feature term of
            the prior, and the scorer's input for an adjacency with a scorer.
        model (nn.Module, optional): the model that consumes the weights; its
            state is part of the checkpoint, and its layers are checked for
            misuse of learned weights
            (:func:`~graphsparse.graph.weighted.check_weight_consumers`).
        **settings: see :data:`LEARNER_DEFAULTS`.
    """

    def __init__(self, adjacency: GatedAdjacency, y: Tensor, train_mask: Tensor, *,
                 x: Optional[Tensor] = None, model: Optional[nn.Module] = None,
                 **settings: Any) -> None:
        unknown = set(settings) - set(LEARNER_DEFAULTS)
        if unknown:
            raise ValueError(f"'StructureLearner' got unknown setting(s) {sorted(unknown)}; "
                             f"valid ones: {sorted(LEARNER_DEFAULTS)}")
        if not isinstance(adjacency, GatedAdjacency):
            raise ValueError(f"'StructureLearner' expects 'adjacency' to be a GatedAdjacency "
                             f"(got {type(adjacency).__name__})")
        cfg = {**LEARNER_DEFAULTS, **settings}
        _number(cfg["lam"], "lam")
        _number(cfg["p"], "p", 1e-6, 1.0)
        check_choice(cfg["reduction"], ("sum", "mean"), "reduction", "StructureLearner")
        _number(cfg["warmup"], "warmup", integer=True)
        _number(cfg["gate_start"], "gate_start", integer=True)
        _number(cfg["distill"], "distill")
        check_choice(cfg["prior"], PRIORS, "prior", "StructureLearner")
        for name in ("prior_scale", "prior_features", "gate_lr"):
            _number(cfg[name], name)
        _number(cfg["prior_temperature"], "prior_temperature", 1e-6)
        _number(cfg["prior_momentum"], "prior_momentum", 0.0, 1.0)
        _number(cfg["min_sparsity"], "min_sparsity", 0.0, 1.0)
        if cfg["threshold_lr"] is not None:
            _number(cfg["threshold_lr"], "threshold_lr")
        if cfg["distill"] and cfg["gate_start"] < 1:
            raise ValueError(f"'distill' ({cfg['distill']}) needs 'gate_start' >= 1: the teacher "
                             f"is the model's prediction after the first gate_start epochs; set "
                             f"gate_start or distill=0")
        n = adjacency.num_nodes
        if y.shape != (n,) or train_mask.shape != (n,) or train_mask.dtype != torch.bool:
            raise ValueError(f"'StructureLearner' expects 'y' [N] and a boolean 'train_mask' "
                             f"[N] with N = {n} (got {tuple(y.shape)}, "
                             f"{tuple(train_mask.shape)} {train_mask.dtype})")
        if adjacency.scorer is not None and x is None:
            raise ValueError("'StructureLearner' needs 'x' for an adjacency with a scorer")
        if model is not None:
            check_weight_consumers(model)
        self.settings = cfg
        self.adjacency = adjacency
        self.model = model
        self.y, self.train_mask = y, train_mask
        self.x = x if adjacency.scorer is not None else None
        self.epoch = 0
        self.teacher: Optional[Tensor] = None
        self.ema: Optional[Tensor] = None
        self.best: Optional[Dict[str, Any]] = None
        self.last: Optional[Dict[str, Any]] = None
        self.num_classes = int(y[train_mask].max()) + 1 if bool(train_mask.any()) else 0
        self._feature_prior = self._features_prior(x) if cfg["prior"] == "agreement" else None
        self._set_gate_active()

    # ------------------------------------------------------------ settings
    def param_groups(self) -> List[Dict[str, Any]]:
        """Optimizer groups of the gate, with the recipe's learning rates
        (:meth:`GatedAdjacency.param_groups`)."""
        return self.adjacency.param_groups(self.settings["gate_lr"], self.settings["threshold_lr"])

    @property
    def gate_active(self) -> bool:
        """Whether the gate trains in the current epoch (``epoch >= gate_start``)."""
        return self.epoch >= self.settings["gate_start"]

    @property
    def lam(self) -> float:
        """The penalty weight of the current epoch."""
        if not self.gate_active:
            return 0.0
        t = self.epoch - self.settings["gate_start"] + 1
        warmup = self.settings["warmup"]
        return self.settings["lam"] * (min(1.0, t / warmup) if warmup else 1.0)

    def _set_gate_active(self) -> None:
        for prm in self.adjacency.gate_parameters():
            prm.requires_grad_(self.gate_active)

    # ------------------------------------------------------------ the loop
    def loss(self, out: Tensor, n_id: Optional[Tensor] = None) -> Tensor:
        """The recipe's extra loss for the training-mode logits ``out``
        (``[N, C]``, or ``[N_b, C]`` of a mini-batch whose nodes are ``n_id``):
        the distillation term once the teacher exists, plus
        :math:`\\lambda_t` times the penalty, which reuses the weights of the
        forward pass that produced ``out`` (a batch's, after
        :meth:`GatedAdjacency.subgraph`). Add it to your task loss."""
        total = out.new_zeros(())
        if self.teacher is not None:
            teacher = self.teacher if n_id is None else self.teacher.index_select(0, n_id)
            # a sum over nodes, like the penalty: mu does not depend on N
            total = total + self.settings["distill"] * F.kl_div(
                out.log_softmax(-1), teacher, reduction="sum")
        lam = self.lam
        if lam > 0:
            total = total + lam * self.penalty()
        return total

    def penalty(self) -> Tensor:
        """The adjacency's penalty with the learner's ``p`` and ``reduction``."""
        return self.adjacency.penalty(self.settings["p"], self.x,
                                      reduction=self.settings["reduction"])

    @torch.no_grad()
    def step(self, out: Tensor, metric: Optional[float] = None) -> bool:
        """The per-epoch update, after the optimizer step and an evaluation.

        Args:
            out (Tensor): ``[N, C]`` eval-mode logits of every node, computed
                with the adjacency's current weights (its last forward pass,
                whose weights give the sparsity of this epoch).
            metric (float, optional): the validation score of this epoch,
                higher is better (``None``: no validation, the last epoch is
                kept).

        Returns:
            Whether this epoch is the new best checkpoint.
        """
        values = self.adjacency.last_edge_values
        if values is None:
            values = self.adjacency.edge_values(self.x)
        if self.epoch == self.settings["gate_start"]:
            self._check_gate_gradient()
        sparsity = self.adjacency.sparsity_of(values)
        improved = self._consider(metric, sparsity, values)
        cfg = self.settings
        start = cfg["gate_start"]
        if cfg["distill"] and self.epoch + 1 == start:
            self.teacher = out.softmax(-1)
        if cfg["prior"] == "agreement":
            # Predicted class distributions (train nodes: their labels),
            # smoothed over epochs; the prior of the next epoch's gate.
            prob = (out / cfg["prior_temperature"]).softmax(-1)
            if self.num_classes == prob.size(-1):
                prob[self.train_mask] = F.one_hot(self.y[self.train_mask],
                                                  self.num_classes).to(prob.dtype)
            m = cfg["prior_momentum"]
            self.ema = prob if self.ema is None else m * self.ema + (1 - m) * prob
            if self.epoch + 1 >= start:
                self._set_prior()
        self.epoch += 1
        self._set_gate_active()
        return improved

    def restore(self, model: Optional[nn.Module] = None) -> Dict[str, Any]:
        """Loads the best checkpoint into the adjacency (and ``model``, default
        the learner's) and returns its record (``epoch``, ``metric``,
        ``sparsity``, ``values``). When no epoch reached ``min_sparsity`` (or
        no ``metric`` was given) the current state, the last epoch's, stays."""
        if self.last is None:
            raise ValueError("'StructureLearner.restore' before any 'step'")
        if self.best is None:
            return dict(self.last)
        self.adjacency.load_state_dict(self.best["adjacency"])
        model = self.model if model is None else model
        if model is not None and self.best["model"] is not None:
            model.load_state_dict(self.best["model"])
        return {k: v for k, v in self.best.items() if k not in ("adjacency", "model")}

    # ------------------------------------------------------------ internals
    def _consider(self, metric: Optional[float], sparsity: float, values: Tensor) -> bool:
        if metric is not None and metric != metric:
            raise ValueError("'StructureLearner.step' got a NaN 'metric'")
        self.last = dict(epoch=self.epoch, metric=metric, sparsity=sparsity, values=values)
        if metric is None or sparsity < self.settings["min_sparsity"]:
            return False
        if self.best is not None and metric < self.best["metric"]:
            return False
        self.best = dict(self.last, values=values.clone(),
                         adjacency=_copy(self.adjacency.state_dict()),
                         model=None if self.model is None else _copy(self.model.state_dict()))
        return True

    def _features_prior(self, x: Optional[Tensor]) -> Optional[Tensor]:
        kappa = self.settings["prior_features"]
        if x is None or not kappa:
            return None
        cand = self.adjacency.edge_index
        loop = cand[0] == cand[1]
        fc = edge_cosine(x, cand)              # O(E + N F): no [E, F] gathers
        if int((~loop).sum()) < 2:
            return None
        mu, sd = fc[~loop].mean(), fc[~loop].std().clamp_min(1e-12)
        return kappa * ((fc - mu) / sd).clamp(-3.0, 3.0)

    def _set_prior(self) -> None:
        cand = self.adjacency.edge_index
        assert self.ema is not None
        agree = edge_cosine(self.ema, cand)
        prior = self.settings["prior_scale"] * (agree - 1)
        if self._feature_prior is not None:
            prior = prior + self._feature_prior
        loop = cand[0] == cand[1]
        prior[loop] = prior.max()
        self.adjacency.set_logit_prior(prior)

    def _check_gate_gradient(self) -> None:
        grads = [p.grad for p in self.adjacency.gate_parameters()]
        if not any(g is not None and bool(g.abs().sum() > 0) for g in grads):
            warnings.warn(
                "the gate received no gradient in its first training step: the model does "
                "not use the learned edge weights (pass them as 'edge_weight' to layers that "
                "take one, or wrap the model in graphsparse.graph.EdgeWeighted), or "
                "learner.loss() was not added to the loss", stacklevel=4)

    # ------------------------------------------------------------ resume
    def state_dict(self) -> Dict[str, Any]:
        """The learner's own state (epoch, teacher, prior average, best
        checkpoint), for resuming a run; tensors and plain values only."""
        return dict(epoch=self.epoch, teacher=self.teacher, ema=self.ema, best=self.best,
                    last=self.last)

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.epoch = int(state["epoch"])
        self.teacher, self.ema = state["teacher"], state["ema"]
        self.best, self.last = state["best"], state["last"]
        self._set_gate_active()


def _copy(state: Dict[str, Tensor]) -> Dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in state.items()}
