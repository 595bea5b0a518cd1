r"""One-shot normalizations of a weighted adjacency given as an edge list.

Convention (the one of PyG's message passing, ``flow="source_to_target"``):
the column ``(j, i)`` of ``edge_index`` with weight :math:`w` is the entry
:math:`A_{i,j} = w`, so that propagation computes :math:`A X`. The *row* of
an edge is its target ``edge_index[1]`` (the competition between in-coming
nodes of the paper's Fig. 3), its *column* the source ``edge_index[0]``. The
dense reference is ``A = zeros(N, N); A[edge_index[1], edge_index[0]] = w``.

Rows or columns without a nonzero entry stay empty: a degree is replaced by
one *before* it is inverted, so that neither the forward pass nor the
gradient meets ``1 / 0``.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from ..core import group_reduce
from ._ops import scale_edges
from ._validate import check_graph


def inv_degree(deg: Tensor, exponent: float = 1.0, eps: float = 0.0) -> Tensor:
    r""":math:`d^{-e}` for degrees above ``eps`` and 1 for the others.

    The ``torch.where`` acts on the *input* of the power: a masked
    :math:`0^{-e}` would still send ``inf * 0 = NaN`` into the gradient.
    Rows of degree ``<= eps`` have only (numerically) zero entries, so
    scaling them by one leaves them empty.
    """
    alive = deg > eps
    safe = torch.where(alive, deg, torch.ones_like(deg))
    if exponent == 1.0:
        return safe.reciprocal()
    if exponent == 0.5:
        return safe.rsqrt()
    return safe.pow(-exponent)


def _row_norm(row: Tensor, weight: Tensor, num_nodes: int) -> Tensor:
    return scale_edges(weight, inv_degree(group_reduce(weight, row, num_nodes)), row)


def _sym_norm(row: Tensor, col: Tensor, weight: Tensor, num_nodes: int) -> Tensor:
    d = inv_degree(group_reduce(weight, row, num_nodes), 0.5)
    return scale_edges(weight, d, row, d, col)     # one zero mask for both factors


def row_norm(edge_index: Tensor, edge_weight: Optional[Tensor] = None,
             num_nodes: Optional[int] = None) -> Tensor:
    r"""Random-walk normalization :math:`D^{-1} A` with
    :math:`D_i = \sum_j A_{i,j}`: the weights into every non-empty row sum to one.

    Args:
        edge_index (LongTensor): ``[2, E]``, the edge ``(j, i)`` is :math:`A_{i,j}`.
        edge_weight (Tensor, optional): ``[E]`` non-negative weights. (default: ones)
        num_nodes (int, optional): ``N``. (default: ``edge_index.max() + 1``)

    No self-loops are added (add them beforehand as the model requires).

    Shapes:
        - **output:** ``[E]`` normalized weights aligned with ``edge_index``.
    """
    edge_index, edge_weight, num_nodes = check_graph(edge_index, edge_weight, num_nodes,
                                                     "row_norm")
    return _row_norm(edge_index[1], edge_weight, num_nodes)


def sym_norm(edge_index: Tensor, edge_weight: Optional[Tensor] = None,
             num_nodes: Optional[int] = None) -> Tensor:
    r"""Symmetric normalization :math:`D^{-1/2} A D^{-1/2}` with the row sums
    :math:`D_i = \sum_j A_{i,j}` (as PyG's ``gcn_norm`` without added
    self-loops; Kipf & Welling, https://arxiv.org/abs/1609.02907).

    Args:
        edge_index (LongTensor): ``[2, E]``, the edge ``(j, i)`` is :math:`A_{i,j}`.
        edge_weight (Tensor, optional): ``[E]`` non-negative weights. (default: ones)
        num_nodes (int, optional): ``N``. (default: ``edge_index.max() + 1``)

    Shapes:
        - **output:** ``[E]`` normalized weights aligned with ``edge_index``.
    """
    edge_index, edge_weight, num_nodes = check_graph(edge_index, edge_weight, num_nodes,
                                                     "sym_norm")
    return _sym_norm(edge_index[1], edge_index[0], edge_weight, num_nodes)
