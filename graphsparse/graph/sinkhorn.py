r"""Sinkhorn normalization of a sparse adjacency given as an edge list
(paper, section "GCN"; Sinkhorn & Knopp 1967; Knight 2008).

Same convention as :mod:`graphsparse.graph.norm`: the edge ``(j, i)`` is the
entry :math:`A_{i,j}`; rows are targets ``edge_index[1]``, columns sources
``edge_index[0]``.
"""
from __future__ import annotations

import math
from typing import List, Optional, Tuple, Union

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from ..core import group_reduce
from ..utils.validation import check_positive_int
from ._ops import scale_edges
from ._validate import check_graph
from .norm import inv_degree


def _eps(weight: Tensor, eps: Optional[float]) -> float:
    # sqrt(tiny): the gradient of 1/d, -1/d^2, stays finite for every d > eps.
    return math.sqrt(torch.finfo(weight.dtype).tiny) if eps is None else float(eps)


def _sinkhorn_autograd(row: Tensor, col: Tensor, weight: Tensor, num_nodes: int,
                       num_iters: int, balanced: bool, eps: Optional[float] = None) -> Tensor:
    """The unrolled iterations under plain autograd, which keeps ``E + N``
    values per half-step: the reference of :class:`_SinkhornFunction`."""
    eps = _eps(weight, eps)
    a = weight
    for _ in range(num_iters):
        if balanced:
            r = inv_degree(group_reduce(a, row, num_nodes), 0.5, eps)
            c = inv_degree(group_reduce(a, col, num_nodes), 0.5, eps)
            a = scale_edges(a, r, row, c, col)
        else:
            a = scale_edges(a, inv_degree(group_reduce(a, row, num_nodes), 1.0, eps), row)
            a = scale_edges(a, inv_degree(group_reduce(a, col, num_nodes), 1.0, eps), col)
    return a


def _segments(num_iters: int) -> List[int]:
    """Lengths of the recomputed segments, first to last: ``B, B - 1, ...``
    (the last one cut to the total) with the smallest ``B``, ``B (B + 1) / 2
    >= num_iters``. Backward goes from the last segment to the first and
    writes a segment's degrees over the checkpoints it no longer needs, so
    that the checkpoints still needed plus the degrees of the segment being
    reversed are never more than ``B`` iterations' worth, about
    ``sqrt(2 num_iters)``."""
    budget = math.ceil((math.sqrt(8 * num_iters + 1) - 1) / 2)
    lengths: List[int] = []
    left = num_iters
    while left > 0:
        lengths.append(min(budget - len(lengths), left))
        left -= lengths[-1]
    return lengths


def _stores_all(num_iters: int, num_nodes: int, num_edges: int) -> bool:
    # Every iteration's scalings and degrees (4N values) fit in one [E] vector.
    return 4 * num_iters * num_nodes <= num_edges


def _inv_(d: Tensor, exponent: float, eps: float, out: Tensor, alive: Tensor) -> Tensor:
    # inv_degree(d, exponent, eps) written into out; alive: d > eps (a bool buffer).
    torch.gt(d, eps, out=alive)
    torch.where(alive, d, torch.ones((), dtype=d.dtype, device=d.device), out=out)
    return out.reciprocal_() if exponent == 1.0 else out.rsqrt_()


class _Iterations:
    """Sinkhorn on cumulative per-node scalings ``p, q`` (the iterate is
    ``weight * p[row] * q[col]``), in place in buffers allocated once, so
    that the iterations allocate no ``[E]`` tensor (a loop that does lets
    the allocator's heap grow with the iterations)."""

    def __init__(self, row: Tensor, col: Tensor, weight: Tensor, num_nodes: int,
                 balanced: bool, eps: float) -> None:
        self.row, self.col, self.weight, self.n = row, col, weight, num_nodes
        self.balanced, self.eps = balanced, eps
        self.exponent = 0.5 if balanced else 1.0
        self.buf = weight.new_empty(weight.numel())
        self.s = weight.new_empty(num_nodes)
        self.alive = torch.empty(num_nodes, dtype=torch.bool, device=weight.device)

    def _sum(self, factor: Tensor, by_factor: Tensor, by: Tensor, out: Tensor) -> Tensor:
        # out = sum over the edges grouped by `by` of weight * factor[by_factor]
        torch.index_select(factor, 0, by_factor, out=self.buf).mul_(self.weight)
        return out.zero_().index_add_(0, by, self.buf)

    def step(self, p: Tensor, q: Tensor, d_r: Tensor, d_c: Tensor) -> None:
        """One iteration: updates ``p, q`` in place, writes the inverted degrees."""
        self._sum(q, self.col, self.row, d_r).mul_(p)
        if self.balanced:
            self._sum(p, self.row, self.col, d_c).mul_(q)
            p.mul_(_inv_(d_r, 0.5, self.eps, self.s, self.alive))
            q.mul_(_inv_(d_c, 0.5, self.eps, self.s, self.alive))
            return
        p.mul_(_inv_(d_r, 1.0, self.eps, self.s, self.alive))
        self._sum(p, self.row, self.col, d_c).mul_(q)
        q.mul_(_inv_(d_c, 1.0, self.eps, self.s, self.alive))

    def output(self, p: Tensor, q: Tensor) -> Tensor:
        out = torch.index_select(p, 0, self.row).mul_(self.weight)
        return out.mul_(torch.index_select(q, 0, self.col, out=self.buf))


def _checkpointed(it: _Iterations, lengths: List[int], pq: Tensor, deg: Tensor,
                  block: Tensor) -> None:
    """Runs ``sum(lengths)`` iterations on ``pq`` ([2, N], in place) and
    writes the scalings at the start of segment ``i >= 1`` into
    ``block[B - i]`` (``B = lengths[0]``)."""
    for i, length in enumerate(lengths):
        if i > 0:
            block[lengths[0] - i].copy_(pq)
        for _ in range(length):
            it.step(pq[0], pq[1], deg[0], deg[1])


class _SinkhornFunction(torch.autograd.Function):
    r"""Sinkhorn on cumulative per-node scalings: the iterate after ``k``
    iterations is :math:`w_e P^{(k)}_{\mathrm{row}(e)} Q^{(k)}_{\mathrm{col}(e)}`.
    Forward keeps :math:`P, Q` and the degrees of every iteration when those
    :math:`4NK` values are at most ``E`` (:func:`_stores_all`). Otherwise it
    keeps one block of :math:`B \approx \sqrt{2K}` iterations' worth
    (:func:`_segments`: segments of ``B, B - 1, ...`` iterations, the
    scalings at their starts), and backward recomputes each segment's
    degrees from its checkpoint, last segment first, into the block slots of
    the checkpoints it no longer needs. Backward is the exact reverse pass
    of the unrolled half-steps; the per-edge iterates are recomputed from
    ``weight`` on the fly and the scalings before a step are the ones after
    it divided by the step's factors. Saved: ``weight`` and
    :math:`\min(4NK, E)` or :math:`2NB` values; time with checkpoints: one
    extra forward pass."""

    @staticmethod
    def forward(ctx, weight: Tensor, row: Tensor, col: Tensor, num_nodes: int, num_iters: int,
                balanced: bool, eps: float) -> Tensor:
        it = _Iterations(row, col, weight, num_nodes, balanced, eps)
        # Every iteration's 4N values when they are at most one [E] vector;
        # else checkpoints, the segments recomputed backward.
        store_all = _stores_all(num_iters, num_nodes, weight.numel())
        lengths = [num_iters] if store_all else _segments(num_iters)
        pq = weight.new_ones(num_iters + 1 if store_all else 1, 2, num_nodes)
        deg = weight.new_empty(num_iters if store_all else 1, 2, num_nodes)
        if store_all:
            for k in range(num_iters):
                pq[k + 1].copy_(pq[k])
                it.step(pq[k + 1, 0], pq[k + 1, 1], deg[k, 0], deg[k, 1])
        else:
            # One block of B = lengths[0] iterations' worth: checkpoint i at
            # block[B - i]; backward writes the degrees of segment j into
            # block[:lengths[j]], over the checkpoints of the later segments,
            # which it has reversed already.
            block = weight.new_empty(lengths[0], 2, num_nodes)
            _checkpointed(it, lengths, pq[0], deg[0], block)
        ctx.num_nodes, ctx.num_iters, ctx.balanced, ctx.eps = num_nodes, num_iters, balanced, eps
        ctx.store_all, ctx.lengths = store_all, lengths
        ctx.consumed = False
        if store_all:
            ctx.save_for_backward(weight, row, col, pq, deg)
        else:
            # On ctx, not saved: backward overwrites it (and recomputes it
            # for a second backward).
            ctx.block = block
            ctx.save_for_backward(weight, row, col)
        return it.output(pq[-1, 0], pq[-1, 1])

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        weight, row, col, *saved = ctx.saved_tensors
        n, balanced, eps = ctx.num_nodes, ctx.balanced, ctx.eps
        it = _Iterations(row, col, weight, n, balanced, eps)
        tmp = it.buf
        exponent = it.exponent
        zero = weight == 0                     # one mask for every half-step
        g = grad.masked_fill(zero, 0.0)
        if ctx.store_all:
            pq, deg = saved                    # every iteration's scalings and degrees
        else:
            block = ctx.block
            pq = weight.new_empty(2, 2, n)     # the scalings after and before a step
            if ctx.consumed:                   # a second backward (retain_graph=True)
                _checkpointed(it, ctx.lengths, pq[0].fill_(1.0), pq[1], block)
            ctx.consumed = True
        # Every N-sized temporary is allocated once: a loop that allocates
        # lets the allocator's heap grow with the iterations.
        s = weight.new_empty(2, n)
        slope = weight.new_empty(2, n)
        dd, dd_r = weight.new_empty(n), weight.new_empty(n)
        alive = it.alive
        one = torch.ones((), dtype=weight.dtype, device=weight.device)

        def gather(v: Tensor, index: Tensor) -> Tensor:
            return torch.index_select(v, 0, index, out=tmp)

        def sum_into(index: Tensor) -> Tensor:
            return dd.zero_().index_add_(0, index, tmp)

        for seg in reversed(range(len(ctx.lengths))):
            steps = ctx.lengths[seg]
            if not ctx.store_all:
                # Recompute the segment's degrees from its checkpoint; going
                # back, the scalings before a step are the ones after it
                # divided by the step's factors (exact where a row or column
                # is left as it is, within an ulp per step otherwise).
                if seg > 0:
                    pq[1].copy_(block[ctx.lengths[0] - seg])
                else:
                    pq[1].fill_(1.0)
                deg = block[:steps]                    # the inverted degrees of the segment
                for j in range(steps):
                    it.step(pq[1, 0], pq[1, 1], deg[j, 0], deg[j, 1])
            for j in reversed(range(steps)):
                for i in range(2):
                    # s = d^-e and ds/dd = -e s / d above eps; 1 and 0 below.
                    _inv_(deg[j, i], exponent, eps, s[i], alive)
                    torch.where(alive, deg[j, i], one, out=slope[i])
                    slope[i].reciprocal_().mul_(s[i]).mul_(-exponent).mul_(alive)
                r, c = s[0], s[1]
                if ctx.store_all:
                    (p_old, q_old), (p_new, q_new) = pq[j], pq[j + 1]
                else:
                    if j < steps - 1:
                        pq[1].copy_(pq[0])
                    (p_new, q_new), (p_old, q_old) = pq[1], pq[0]
                    torch.div(p_new, r, out=p_old)
                    torch.div(q_new, c, out=q_old)
                if balanced:
                    # a_k = a_{k-1} r[row] c[col], r and c from the sums of a_{k-1}:
                    # d(sum_row)/.. = p_old * sum_row(g w q_new[col]), and alike.
                    gather(q_new, col).mul_(weight).mul_(g)
                    dd_r.copy_(sum_into(row).mul_(p_old).mul_(slope[0]))
                    gather(p_new, row).mul_(weight).mul_(g)
                    dd_c = sum_into(col).mul_(q_old).mul_(slope[1])
                    g.mul_(gather(r, row)).mul_(gather(c, col)).masked_fill_(zero, 0.0)
                    g.add_(gather(dd_r, row)).add_(gather(dd_c, col))
                else:
                    # Column half-step: input w p_new[row] q_old[col], scaled by c[col].
                    gather(p_new, row).mul_(weight).mul_(g)
                    sum_into(col).mul_(q_old).mul_(slope[1])
                    g.mul_(gather(c, col)).masked_fill_(zero, 0.0).add_(gather(dd, col))
                    # Row half-step: input w p_old[row] q_old[col], scaled by r[row].
                    gather(q_old, col).mul_(weight).mul_(g)
                    sum_into(row).mul_(p_old).mul_(slope[0])
                    g.mul_(gather(r, row)).masked_fill_(zero, 0.0).add_(gather(dd, row))
        # Each masked_fill dropped the zeros' own gradient, which would only
        # flow back to themselves; what remains at the zeros is what the first
        # degrees send them, as under plain autograd.
        return g, None, None, None, None, None, None


def _sinkhorn(row: Tensor, col: Tensor, weight: Tensor, num_nodes: int, num_iters: int,
              balanced: bool, eps: Optional[float] = None) -> Tensor:
    """The iterations, without input checks (the hot path of the modules)."""
    eps = _eps(weight, eps)
    if torch.is_grad_enabled() and weight.requires_grad:
        return _SinkhornFunction.apply(weight, row, col, num_nodes, num_iters, bool(balanced),
                                       eps)
    with torch.no_grad():
        it = _Iterations(row, col, weight, num_nodes, bool(balanced), eps)
        pq = weight.new_ones(2, num_nodes)
        deg = weight.new_empty(2, num_nodes)
        for _ in range(num_iters):
            it.step(pq[0], pq[1], deg[0], deg[1])
        return it.output(pq[0], pq[1])


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
    (:math:`O(E)` time per iteration, never :math:`N \times N`). The iterate
    after :math:`k` iterations is the input scaled by cumulative per-node
    factors, :math:`A^{(k)}_{i,j} = P^{(k)}_i A_{i,j} Q^{(k)}_j`, so the
    backward pass (a hand-written reverse pass, the exact gradient of the
    unrolled iterations) keeps the input weights and :math:`O(N)` scalings
    per iteration, at most one ``[E]`` vector of them; beyond that it keeps
    :math:`O(N\sqrt{K})` checkpointed scalings and recomputes (one extra
    forward pass). Its memory does not grow with :math:`K` in
    units of ``E``. Not twice differentiable.

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
