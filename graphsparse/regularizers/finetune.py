r"""Masked fine-tuning of a finalized sparse model.

After :meth:`StructuredRegularizer.finalize` has written exact zeros, the
surviving weights can be retrained for a few epochs without the regularizer
while every zero stays exactly zero: with mask :math:`M = [W \ne 0]`,

.. math::
    \nabla_W \leftarrow M \odot \nabla_W, \qquad
    W \leftarrow M \odot \mathrm{step}(W)

(the gradient is masked before the optimizer step, so Adam's moments of a zero
weight stay zero, and the mask is re-applied after it, so momentum, weight
decay or any other optimizer term cannot revive a zero). The sparsity pattern,
hence weight and neuron sparsity and channel compaction, are unchanged.

This is *not* part of Algorithm 1 of the SGL0 paper; the examples apply it
identically to every method, only when asked, and report the test error
before and after it.
"""
from __future__ import annotations

from typing import List, Union

import torch
from torch import Tensor, nn

from ._layers import LayerGroups
from .metrics import _layers_of


class ZeroMask:
    r"""The exact zeros of the covered weights, frozen for fine-tuning.

    Args:
        source: a model (its conv / linear layers, grouped with
            ``linear_groups``), a regularizer (its own layers) or a list of
            :class:`LayerGroups`. Every covered parameter that is exactly zero
            now is held at zero by :meth:`mask_grad_` and :meth:`apply_`.
        linear_groups (str, optional): used only when ``source`` is a model.
            (default: ``"out"``)

    Example::

        reg.finalize()
        mask = ZeroMask(reg)
        for x, y in batches:
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(); loss.backward()
            mask.mask_grad_(); opt.step(); mask.apply_()
    """

    def __init__(self, source: Union[nn.Module, object, List[LayerGroups]],
                 linear_groups: str = "out"):
        layers = _layers_of(source, linear_groups)
        self.params: List[Tensor] = [p for layer in layers for p in layer.params]
        if not self.params:
            raise ValueError("'ZeroMask' expects 'source' to cover at least one parameter")
        self.masks: List[Tensor] = [p.detach() != 0 for p in self.params]

    @property
    def num_zeros(self) -> int:
        """Number of covered weights held at zero."""
        return sum(int((~m).sum()) for m in self.masks)

    @torch.no_grad()
    def mask_grad_(self) -> None:
        """Zeroes, in place, the gradients of the frozen zeros (call before ``opt.step()``)."""
        for p, m in zip(self.params, self.masks, strict=True):
            if p.grad is not None:
                p.grad.mul_(m)

    @torch.no_grad()
    def apply_(self) -> None:
        """Writes the frozen zeros back into the weights (call after ``opt.step()``)."""
        for p, m in zip(self.params, self.masks, strict=True):
            p.mul_(m)

    def __repr__(self) -> str:
        total = sum(m.numel() for m in self.masks)
        return f"ZeroMask(zeros={self.num_zeros}, weights={total})"
