r"""Sinkhorn normalization of a sparse adjacency given as an edge list
(paper, section "GCN"; Sinkhorn & Knopp 1967; Knight 2008).

Same convention as :mod:`graphsparse.graph.norm`: the edge ``(j, i)`` is the
entry :math:`A_{i,j}`; rows are targets ``edge_index[1]``, columns sources
``edge_index[0]``.
"""
from __future__ import annotations

import math
from typing import Optional, Tuple, Union

import torch
from torch import Tensor

from ..utils.validation import check_positive_int
from ._ops import scale_edges
from ._validate import check_graph
from ..core import group_reduce
from .norm import inv_degree


def _eps(weight: Tensor, eps: Optional[float]) -> float:
    # sqrt(tiny): the gradient of 1/d, -1/d^2, stays finite for every d > eps.
    return math.sqrt(torch.finfo(weight.dtype).tiny) if eps is None else float(eps)


def _sinkhorn(row: Tensor, col: Tensor, weight: Tensor, num_nodes: int, num_iters: int,
              balanced: bool, eps: Optional[float] = None) -> Tensor:
    """The iterations, without input checks (the hot path of the modules)."""
    eps = _eps(weight, eps)
    a = weight
    for _ in range(num_iters):
        if balanced:
            r = inv_degree(group_reduce(a, row, num_nodes), 0.5, eps)
            c = inv_degree(group_reduce(a, col, num_nodes), 0.5, eps)
            a = scale_edges(scale_edges(a, r, row), c, col)
        else:
            a = scale_edges(a, inv_degree(group_reduce(a, row, num_nodes), 1.0, eps), row)
            a = scale_edges(a, inv_degree(group_reduce(a, col, num_nodes), 1.0, eps), col)
    return a


@torch.no_grad()
def sinkhorn_error(row: Tensor, col: Tensor, weight: Tensor, num_nodes: int,
                   eps: Optional[float] = None) -> Tensor:
    """Largest deviation from one of the row and column sums, over the rows
    and columns with a nonzero entry (a detached scalar tensor)."""
    eps = _eps(weight, eps)
    err = weight.new_zeros(())
    for index in (row, col):
        s = group_reduce(weight, index, num_nodes)
        dev = torch.where(s > eps, (s - 1).abs(), torch.zeros_like(s))
        if dev.numel() > 0:
            err = torch.maximum(err, dev.max())
    return err


def sinkhorn(edge_index: Tensor, edge_weight: Optional[Tensor] = None,
             num_nodes: Optional[int] = None, num_iters: int = 10, balanced: bool = False,
             eps: Optional[float] = None,
             return_error: bool = False) -> Union[Tensor, Tuple[Tensor, Tensor]]:
    r"""Sinkhorn normalization toward a doubly stochastic matrix.

    Standard (Sinkhorn-Knopp), per iteration:

    .. math::
        A \leftarrow D_r^{-1} A, \quad [D_r]_i = \textstyle\sum_j A_{i,j};
        \qquad A \leftarrow A D_c^{-1}, \quad [D_c]_j = \textstyle\sum_i A_{i,j}.

    Balanced (``balanced=True``), per iteration, both degrees taken from the
    same :math:`A` (the paper observes convergence numerically):

    .. math::
        A \leftarrow D_r^{-1/2} A D_c^{-1/2}.

    Every operation is a scatter-sum or a gather over the ``E`` edges
    (:math:`O(E)` time per iteration, never :math:`N \times N`) and autograd
    differentiates through the iterations, keeping :math:`E + N` values per
    half-step for the backward pass.

    * Zero weights stay exactly zero (entries are only ever rescaled).
    * Rows and columns whose sum is ``<= eps`` are left as they are: their
      degree is replaced by one before it is inverted, so there is no NaN or
      inf in the forward or the backward pass.
    * Float32 is safe without a log-domain path: after the first row
      normalization every entry lies in :math:`[0, 1]` and every nonempty row
      or column sum is at least its largest entry, so no iterate or degree
      can overflow; only degrees above ``eps`` are inverted, so the inverse
      and its derivative :math:`-1/d^2` stay finite (tested with degrees of
      :math:`10^4` and weights in :math:`[10^{-8}, 1]` against float64).

    Args:
        edge_index (LongTensor): ``[2, E]``; the edge ``(j, i)`` is :math:`A_{i,j}`.
        edge_weight (Tensor, optional): ``[E]`` non-negative weights. (default: ones)
        num_nodes (int, optional): ``N``. (default: ``edge_index.max() + 1``)
        num_iters (int): number of iterations (one row and one column step
            each for the standard variant). (default: ``10``)
        balanced (bool): use the balanced update. (default: ``False``)
        eps (float, optional): sums at or below it count as empty.
            (default: the square root of the smallest normal number of the
            dtype, about :math:`10^{-19}` in float32)
        return_error (bool): also return the largest deviation from one of
            the final row and column sums over nonempty rows and columns, a
            detached scalar tensor. (default: ``False``)

    Shapes:
        - **output:** ``[E]`` weights aligned with ``edge_index`` (and a
          scalar error if ``return_error``).
    """
    edge_index, edge_weight, num_nodes = check_graph(edge_index, edge_weight, num_nodes,
                                                     "sinkhorn")
    check_positive_int(num_iters, "num_iters", "sinkhorn")
    row, col = edge_index[1], edge_index[0]
    out = _sinkhorn(row, col, edge_weight, num_nodes, num_iters, bool(balanced), eps)
    if return_error:
        return out, sinkhorn_error(row, col, out, num_nodes, eps)
    return out
