"""Group reductions shared by the gate and the penalty.

Two layouts of groups, one mechanism:

* **dense** (``index is None``): the last dimension of a ``[..., n]`` tensor is
  one group of ``n`` components; there are ``prod(shape[:-1])`` groups.
* **ragged** (``index`` given): component ``e`` of a ``[E]`` tensor belongs to
  group ``index[e]`` in ``[0, G)``; groups have different sizes and the sums
  are scatter-adds, never a Python loop over groups.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor


def group_reduce(x: Tensor, index: Optional[Tensor], num_groups: Optional[int],
                 reduce: str = "sum") -> Tensor:
    """Per-group sum (or max) of ``x``.

    Returns ``[..., 1]`` for dense groups and ``[G]`` for ragged groups.
    Empty ragged groups reduce to 0.
    """
    if index is None:
        if reduce == "sum":
            return x.sum(dim=-1, keepdim=True)
        return x.amax(dim=-1, keepdim=True)
    assert num_groups is not None
    if reduce == "sum":
        return x.new_zeros(num_groups).index_add(0, index, x)
    out = x.new_zeros(num_groups)
    return out.scatter_reduce(0, index, x, reduce="amax", include_self=False)


def group_expand(s: Tensor, index: Optional[Tensor]) -> Tensor:
    """Broadcasts a per-group value back onto the components of each group."""
    return s if index is None else s.index_select(0, index)


def group_sizes(index: Tensor, num_groups: int) -> Tensor:
    """Number of components in each of the ``num_groups`` ragged groups."""
    return torch.bincount(index, minlength=num_groups)
