"""The interface every structured regularizer shares.

Training loop, for any optimizer and model::

    reg = SGL0(model, lam=0.1, beta=2.5, num_samples=len(train_set))
    for epoch in range(epochs):
        for x, y in batches:
            loss = F.cross_entropy(model(x), y) + reg.penalty()
            opt.zero_grad(); loss.backward(); opt.step()
            reg.step()            # after each optimizer step
        reg.epoch_end()           # schedules (SGL0: beta grows)
    reg.finalize()                # exact zeros in the weights
    print(reg.sparsity()["total"])

The penalties follow the paper's objective ``mean loss + lam / N * R(W)``:
``lam`` is given per training sample and divided by ``num_samples`` (``N``).
"""
from __future__ import annotations

from typing import Any, Dict, Iterable, Optional

import torch
from torch import Tensor, nn

from ..utils.validation import check_nonnegative, check_positive_int
from ._layers import collect_layers
from .metrics import ZERO_TOL, prune_small_, sparsity_report


class StructuredRegularizer:
    r"""Base class: groups of a model's conv / linear weights plus
    :meth:`penalty`, :meth:`step`, :meth:`epoch_end`, :meth:`finalize`.

    Args:
        model (torch.nn.Module): the network; every ``nn.Conv1d/2d/3d`` and
            ``nn.Linear`` is regularized unless ``modules`` is given.
        lam (float): regularization strength :math:`\lambda` per sample (the
            penalty uses ``lam / num_samples``).
        num_samples (int, optional): training set size ``N``. (default: ``1``)
        linear_groups (str, optional): neurons of linear layers: ``"out"``
            (weight rows, with the bias) or ``"in"`` (weight columns, the
            paper's 1,370-neuron count for LeNet-5-Caffe). (default: ``"out"``)
        norms (bool, optional): attach each batch norm that directly follows a
            convolution to its channels' groups (found by tracing the model
            with ``torch.fx``); then a zeroed channel is exactly zero after the
            norm and :func:`compact_channels` can remove it. (default: ``False``)
        modules (iterable of nn.Module, optional): regularize only these.
    """

    def __init__(self, model: nn.Module, lam: float, num_samples: int = 1,
                 linear_groups: str = "out", norms: bool = False,
                 modules: Optional[Iterable[nn.Module]] = None):
        owner = self.__class__.__name__
        self.lam = check_nonnegative(lam, "lam", owner)
        self.num_samples = check_positive_int(num_samples, "num_samples", owner)
        self.linear_groups = linear_groups
        self.norms = bool(norms)
        attached = None
        if norms:
            from ._channels import attached_norms
            attached = attached_norms(model)
        self.layers = collect_layers(model, linear_groups, attached, modules, owner)
        self.epoch = 0

    @property
    def params(self):
        """Every covered parameter, layer by layer."""
        return [p for layer in self.layers for p in layer.params]

    def penalty(self) -> Tensor:
        """The differentiable term to add to the mean training loss."""
        raise NotImplementedError

    def step(self) -> None:
        """Called after every optimizer step (no-op unless overridden)."""

    def epoch_end(self) -> None:
        """Called after every epoch: advances schedules."""
        self.epoch += 1

    @torch.no_grad()
    def finalize(self, tol: float = ZERO_TOL) -> None:
        """Writes exact zeros into the weights: those the paper counts as zero
        (see :func:`prune_small_`). Call once after training."""
        prune_small_(self.layers, tol)

    def sparsity(self, tol: float = ZERO_TOL) -> Dict:
        """:func:`sparsity_report` of the covered weights."""
        return sparsity_report(self.layers, tol)

    def state_dict(self) -> Dict[str, Any]:
        return {"lam": self.lam, "epoch": self.epoch}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.lam, self.epoch = state["lam"], state["epoch"]

    def extra_repr(self) -> str:
        return f"lam={self.lam:g}, num_samples={self.num_samples}"

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.extra_repr()}, "
                f"layers={len(self.layers)}, linear_groups='{self.linear_groups}')")
