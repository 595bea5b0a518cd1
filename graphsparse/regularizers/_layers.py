"""Which parameters a structured regularizer covers, and how they form groups.

Every convolution and linear layer becomes a :class:`LayerGroups`: its covered
parameters viewed as a ``[G, S]`` matrix whose rows are the groups (the
paper's "neurons"):

* ``by="out"``: one row per output channel of a convolution or output neuron
  (weight row) of a linear layer, followed by that channel's bias and, when a
  batch norm is attached, its scale and shift;
* ``by="in"`` (linear layers only): one row per input neuron (weight column);
  the bias is then not covered. With ``linear_groups="in"``, LeNet-5-Caffe has
  20 + 50 + 800 + 500 = 1,370 neurons, the count of the SGL0 paper.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Sequence, Union

import torch
from torch import Tensor, nn

from ..utils.validation import check_choice

REGULARIZABLE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
#: The layer types of :data:`REGULARIZABLE` and :data:`NORMS`, for annotations.
Layer = Union[nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear]
Norm = Union[nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d]


@dataclass(eq=False)
class LayerGroups:
    """The covered parameters of one layer and their ``[G, S]`` group matrix."""
    name: str
    module: Layer
    by: str = "out"
    norm: Optional[Norm] = None

    @property
    def params(self) -> List[Tensor]:
        if self.by == "in":
            return [self.module.weight]
        out = [self.module.weight]
        if self.module.bias is not None:
            out.append(self.module.bias)
        if self.norm is not None:
            out += [self.norm.weight, self.norm.bias]
        return out

    @property
    def num_groups(self) -> int:
        w = self.module.weight
        return w.shape[1] if self.by == "in" else w.shape[0]

    @property
    def group_size(self) -> int:
        return sum(p.numel() for p in self.params) // self.num_groups

    def matrix(self, tensors: Optional[Sequence[Tensor]] = None) -> Tensor:
        """``[G, S]`` view of ``tensors`` (default: the parameters), which are
        shaped like :attr:`params`."""
        tensors = self.params if tensors is None else list(tensors)
        if self.by == "in":
            return tensors[0].t()
        g = tensors[0].shape[0]
        return torch.cat([t.reshape(g, -1) for t in tensors], dim=1)

    def unmatrix(self, m: Tensor) -> List[Tensor]:
        """Inverse of :meth:`matrix`: tensors shaped like :attr:`params`."""
        params = self.params
        if self.by == "in":
            return [m.t()]
        sizes = [p.numel() // m.shape[0] for p in params]
        return [c.reshape(p.shape) for c, p in zip(m.split(sizes, dim=1), params, strict=True)]


def collect_layers(model: nn.Module, linear_groups: str = "out",
                   norms: Optional[Dict[nn.Module, Norm]] = None,
                   modules: Optional[Iterable[nn.Module]] = None,
                   owner: str = "") -> List[LayerGroups]:
    """One :class:`LayerGroups` per convolution / linear layer of ``model``
    (restricted to ``modules`` when given), in registration order.

    Args:
        linear_groups: ``"out"`` (weight rows) or ``"in"`` (weight columns).
        norms: batch norm attached to a layer's output channels; its affine
            parameters join that layer's groups (``by="out"`` only).
    """
    check_choice(linear_groups, ("out", "in"), "linear_groups", owner)
    if not isinstance(model, nn.Module):
        raise ValueError(f"'{owner}' expects 'model' to be a torch.nn.Module "
                         f"(got {type(model).__name__})")
    chosen = None if modules is None else {id(m) for m in modules}
    norms = norms or {}
    layers = []
    for name, m in model.named_modules():
        if not isinstance(m, REGULARIZABLE) or (chosen is not None and id(m) not in chosen):
            continue
        by = "in" if isinstance(m, nn.Linear) and linear_groups == "in" else "out"
        norm = norms.get(m) if by == "out" else None
        if norm is not None and not norm.affine:
            norm = None
        layers.append(LayerGroups(name or type(m).__name__, m, by, norm))
    if not layers:
        raise ValueError(
            f"'{owner}' found nothing to regularize in 'model' ({type(model).__name__}): "
            f"it expects convolution (nn.Conv1d/2d/3d) or nn.Linear layers"
            + (" among 'modules'" if modules is not None else ""))
    return layers
