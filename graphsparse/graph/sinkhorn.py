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
from ._ops import _cached_pattern, _csr, _eager, _Pattern, _pattern, _sddmm, _spmv, scale_edges
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


# Below this rank the CPU SDDMM (sampled_addmm) runs a scalar loop, about as
# slow per column as a whole product of rank 8 (measured on 5M edges: 45 ms
# per column below 8, 70-100 ms for ranks 8-20): fewer columns are padded.
_SDDMM_MIN_RANK = 8


class _EdgeOps:
    r"""The three products of Sinkhorn on the fixed weights :math:`W`
    (:math:`W_{\mathrm{row}(e), \mathrm{col}(e)} = w_e`, duplicates adding up):
    :math:`W v` (:meth:`rows`), :math:`W^\top v` (:meth:`cols`), both CSR
    sparse-matrix-vector products (one pass over the edges, no ``[E]``
    temporary), and the sampled product
    :math:`\langle a_{\mathrm{row}(e)}, b_{\mathrm{col}(e)} \rangle` for every
    edge (:meth:`add_sampled`, an SDDMM). Weights of another dtype than
    float32/float64 (no MKL kernel) take gathers and scatter-sums."""

    def __init__(self, row: Tensor, col: Tensor, weight: Tensor, num_nodes: int,
                 pattern: _Pattern) -> None:
        self.row, self.col, self.weight, self.n = row, col, weight, num_nodes
        self.pattern = pattern
        self.csr = weight.dtype in (torch.float32, torch.float64)
        self._a: Optional[Tensor] = None       # the CSR matrices, built on first use
        self._a_t: Optional[Tensor] = None
        self._acc: Optional[Tensor] = None     # add_sampled's accumulator (CPU)

    def rows(self, v: Tensor, out: Tensor) -> Tensor:
        r""":math:`(W v)_i = \sum_j w_{ij} v_j`, written into ``out`` ``[N]``."""
        return self._product(v, out, transposed=False)

    def cols(self, v: Tensor, out: Tensor) -> Tensor:
        r""":math:`(W^\top v)_j = \sum_i w_{ij} v_i`, written into ``out`` ``[N]``."""
        return self._product(v, out, transposed=True)

    def _product(self, v: Tensor, out: Tensor, transposed: bool) -> Tensor:
        # sums over the edges grouped by `by` of weight * v[src]
        src, by = (self.row, self.col) if transposed else (self.col, self.row)
        if not self.csr:
            return out.zero_().index_add_(0, by, v.index_select(0, src).mul_(self.weight))
        p = self.pattern
        if transposed and self._a_t is None:
            w_t = self.weight if p.perm_t is None else self.weight.index_select(0, p.perm_t)
            self._a_t = _csr(p.crow_t, p.col_t, w_t, self.n)
        elif not transposed and self._a is None:
            self._a = _csr(p.crow, p.col, self.weight.index_select(0, p.perm), self.n)
        a = self._a_t if transposed else self._a
        assert a is not None
        return _spmv(a, v, out)

    def release(self) -> None:
        """Frees the CSR values (an ``[E]`` vector each)."""
        self._a = self._a_t = None

    def add_sampled(self, out: Tensor, a: Tensor, b: Tensor, rank: int) -> None:
        r"""``out[e] += sum_{k < rank} a[row(e), k] b[col(e), k]`` (an SDDMM
        from ``[N, R]`` factors), in edge order, once :meth:`flush_sampled`
        has run. Below ``_SDDMM_MIN_RANK`` the factors' next columns are
        zeroed and taken along (``R`` must allow it). On the CPU the terms
        accumulate in place in one CSR tensor over the transposed pattern
        (``sampled_addmm`` with ``beta=1``): no ``[E]`` allocation per call."""
        if rank < _SDDMM_MIN_RANK:
            a[:, rank:_SDDMM_MIN_RANK].zero_()
            b[:, rank:_SDDMM_MIN_RANK].zero_()
            rank = _SDDMM_MIN_RANK
        # contiguous [N, R] rows (strided factors make the product several times slower)
        a, b = a[:, :rank].contiguous(), b[:, :rank].contiguous()
        p = self.pattern
        e = self.weight.numel()
        # as _sddmm: sampled_addmm fails on more entries than an N x N matrix has
        if self.csr and a.device.type == "cpu" and e <= self.n * self.n:
            if self._acc is None:
                self._acc = _csr(p.crow_t, p.col_t, torch.zeros_like(self.weight), self.n)
            torch.sparse.sampled_addmm(self._acc, b, a.t(), beta=1.0, out=self._acc)
            return
        _sddmm(a, b, p.crow_t, p.col_t, p.perm_t, self.weight, chunked=True, out=out)

    def flush_sampled(self, out: Tensor) -> Tensor:
        """Adds the terms accumulated by :meth:`add_sampled` into ``out``
        (edge order) and frees them; returns ``out``."""
        if self._acc is not None:
            vals, perm_t = self._acc.values(), self.pattern.perm_t
            out.add_(vals) if perm_t is None else out.index_add_(0, perm_t, vals)
            self._acc = None
        return out


class _Iterations:
    r"""Sinkhorn on cumulative per-node scalings ``p, q`` (the iterate is
    ``weight * p[row] * q[col]``): every half-step is one sparse
    matrix-vector product with the fixed weights, the row sums of the
    iterate being :math:`p \circ (W q)` and its column sums
    :math:`q \circ (W^\top p)`."""

    def __init__(self, ops: _EdgeOps, balanced: bool, eps: float) -> None:
        self.ops, self.balanced, self.eps = ops, balanced, eps
        self.exponent = 0.5 if balanced else 1.0
        weight = ops.weight
        self.s = weight.new_empty(ops.n)
        self.alive = torch.empty(ops.n, dtype=torch.bool, device=weight.device)

    def step(self, p: Tensor, q: Tensor, d_r: Tensor, d_c: Tensor) -> None:
        """One iteration: updates ``p, q`` in place, writes the degrees."""
        self.ops.rows(q, d_r).mul_(p)
        if self.balanced:
            self.ops.cols(p, d_c).mul_(q)
            p.mul_(_inv_(d_r, 0.5, self.eps, self.s, self.alive))
            q.mul_(_inv_(d_c, 0.5, self.eps, self.s, self.alive))
            return
        p.mul_(_inv_(d_r, 1.0, self.eps, self.s, self.alive))
        self.ops.cols(p, d_c).mul_(q)
        q.mul_(_inv_(d_c, 1.0, self.eps, self.s, self.alive))

    def output(self, p: Tensor, q: Tensor) -> Tensor:
        ops = self.ops
        out = torch.index_select(p, 0, ops.row).mul_(ops.weight)
        return out.mul_(torch.index_select(q, 0, ops.col))


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


def _edge_ops(row: Tensor, col: Tensor, weight: Tensor, num_nodes: int,
              edge_index: Optional[Tensor]) -> _EdgeOps:
    # The CSR pattern of the candidates is built once and shared with the
    # propagation (weighted_aggregate) when the edge_index tensor is given.
    pattern = (_cached_pattern(edge_index, num_nodes) if edge_index is not None
               else _pattern(col, row, num_nodes))
    return _EdgeOps(row, col, weight, num_nodes, pattern)


class _SinkhornFunction(torch.autograd.Function):
    r"""Sinkhorn on cumulative per-node scalings: the iterate after ``k``
    iterations is :math:`w_e P^{(k)}_{\mathrm{row}(e)} Q^{(k)}_{\mathrm{col}(e)}`,
    and each half-step is one sparse matrix-vector product with the fixed
    weights (``P <- P / (P (W Q))``, ``Q <- Q / (Q (W^T P))``).
    Forward keeps :math:`P, Q` and the degrees of every iteration when those
    :math:`4NK` values are at most ``E`` (:func:`_stores_all`). Otherwise it
    keeps one block of :math:`B \approx \sqrt{2K}` iterations' worth
    (:func:`_segments`: segments of ``B, B - 1, ...`` iterations, the
    scalings at their starts), and backward recomputes each segment's
    degrees from its checkpoint, last segment first, into the block slots of
    the checkpoints it no longer needs.

    Backward is the exact reverse pass of the unrolled half-steps, in
    :math:`O(N)` vectors: a half-step :math:`d = P \circ (W Q)`,
    :math:`P' = P\, s(d)` sends :math:`\bar P = \bar P' (s + s'(d)\, d)`,
    :math:`\bar Q \mathrel{+}= W^\top u` with :math:`u = \bar P' P^2 s'(d)`,
    and to the weights the rank-one term :math:`u_i Q_j`; the rank-one terms
    of a segment are summed over the edges by one sampled product (SDDMM)
    of rank two per iteration. Saved: ``weight`` and :math:`\min(4NK, E)` or
    :math:`2NB` values; time with checkpoints: one extra forward pass."""

    @staticmethod
    def forward(ctx, weight: Tensor, row: Tensor, col: Tensor, num_nodes: int, num_iters: int,
                balanced: bool, eps: float, edge_index: Optional[Tensor]) -> Tensor:
        it = _Iterations(_edge_ops(row, col, weight, num_nodes, edge_index), balanced, eps)
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
        ctx.edge_index = edge_index      # for the cached pattern; not differentiated
        ctx.consumed = False
        if store_all:
            ctx.save_for_backward(weight, row, col, pq, deg)
        else:
            # On ctx, not saved: backward overwrites it (and recomputes it
            # for a second backward).
            ctx.block = block
            ctx.save_for_backward(weight, row, col, pq[0])   # and the final scalings
        return it.output(pq[-1, 0], pq[-1, 1])

    @staticmethod
    @once_differentiable
    @_eager
    def backward(ctx, grad: Tensor):
        weight, row, col, *saved = ctx.saved_tensors
        n, balanced, eps = ctx.num_nodes, ctx.balanced, ctx.eps
        ops = _edge_ops(row, col, weight, n, ctx.edge_index)
        it = _Iterations(ops, balanced, eps)
        exponent = it.exponent
        zero = weight == 0
        # The zeros' own gradient would only flow back to themselves: dropped.
        g = grad.masked_fill(zero, 0.0)
        if ctx.store_all:
            pq, deg = saved                    # every iteration's scalings and degrees
            p_k, q_k = pq[-1, 0], pq[-1, 1]
        else:
            p_k, q_k = saved[0]                # the final scalings
            block = ctx.block
            pq = weight.new_empty(2, 2, n)     # the scalings after and before a step
            if ctx.consumed:                   # a second backward (retain_graph=True)
                _checkpointed(it, ctx.lengths, pq[0].fill_(1.0), pq[1], block)
            ctx.consumed = True
        # out = w p[row] q[col]: the weights' own term and the scalings' gradients
        grad_w = torch.index_select(p_k, 0, row).mul_(g).mul_(torch.index_select(q_k, 0, col))
        gw = _EdgeOps(row, col, g.mul_(weight), n, ops.pattern)
        p_bar = gw.rows(q_k, weight.new_empty(n))
        gw.release()                           # one [E] vector of CSR values at a time
        q_bar = gw.cols(p_k, weight.new_empty(n))
        del gw
        tmp = g                                # free now: scratch for the last gathers
        # The rank-one terms u_i v_j of the half-steps (two per iteration),
        # summed over the edges by one SDDMM whenever the buffers are full:
        # [N, cap] each (the layout of the SDDMM), at most E/2 values in all.
        cap = max(_SDDMM_MIN_RANK, min(2 * ctx.num_iters, weight.numel() // (4 * n)))
        us, vs = weight.new_empty(n, cap), weight.new_empty(n, cap)
        # contiguous, for the products (every N-sized temporary is allocated
        # once: a loop that allocates lets the allocator's heap grow)
        u_r, v_c, prod = weight.new_empty(n), weight.new_empty(n), weight.new_empty(n)
        fill = 0
        s = weight.new_empty(2, n)
        slope = weight.new_empty(2, n)
        keep = weight.new_empty(2, n)           # s + s'(d) d: what a scaling passes back
        alive = it.alive
        one = torch.ones((), dtype=weight.dtype, device=weight.device)
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
                deg = block[:steps]
                for j in range(steps):
                    it.step(pq[1, 0], pq[1, 1], deg[j, 0], deg[j, 1])
            for j in reversed(range(steps)):
                if fill + 2 > cap:
                    ops.add_sampled(grad_w, us, vs, fill)
                    fill = 0
                for i in range(2):
                    # s = d^-e and ds/dd = -e s / d above eps; 1 and 0 below.
                    _inv_(deg[j, i], exponent, eps, s[i], alive)
                    torch.where(alive, deg[j, i], one, out=slope[i])
                    slope[i].reciprocal_().mul_(s[i]).mul_(-exponent).mul_(alive)
                    torch.addcmul(s[i], slope[i], deg[j, i], out=keep[i])
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
                    # d_r = p_old (W q_old), d_c = q_old (W^T p_old); p_new = p_old
                    # s(d_r), q_new = q_old s(d_c)
                    torch.mul(p_bar, slope[0], out=u_r).mul_(p_old).mul_(p_old)
                    torch.mul(q_bar, slope[1], out=v_c).mul_(q_old).mul_(q_old)
                    us[:, fill].copy_(p_old)
                    vs[:, fill].copy_(v_c)
                    us[:, fill + 1].copy_(u_r)
                    vs[:, fill + 1].copy_(q_old)
                    p_bar.mul_(keep[0]).add_(ops.rows(v_c, prod))
                    q_bar.mul_(keep[1]).add_(ops.cols(u_r, prod))
                else:
                    # column half-step: d_c = q_old (W^T p_new), q_new = q_old s(d_c)
                    torch.mul(q_bar, slope[1], out=v_c).mul_(q_old).mul_(q_old)
                    us[:, fill].copy_(p_new)
                    vs[:, fill].copy_(v_c)
                    q_bar.mul_(keep[1])
                    p_bar.add_(ops.rows(v_c, prod))
                    # row half-step: d_r = p_old (W q_old), p_new = p_old s(d_r)
                    torch.mul(p_bar, slope[0], out=u_r).mul_(p_old).mul_(p_old)
                    us[:, fill + 1].copy_(u_r)
                    vs[:, fill + 1].copy_(q_old)
                    p_bar.mul_(keep[0])
                    q_bar.add_(ops.cols(u_r, prod))
                fill += 2       # in the order of this pass: the row half-step's term last
        # As under plain autograd with structural zeros: a zero is rescaled to
        # zero by every half-step, so only what the first half-step's degrees
        # (both degrees of a first balanced step) send reaches it: the last
        # terms written.
        # The first half-step's scalings are ones: its terms are u_r[row]
        # (and, balanced, v_c[col]), one gather each.
        u_first = us[:, fill - 1].clone()
        v_first = vs[:, fill - 2].clone() if balanced else None
        rest = fill - (2 if balanced else 1)
        if rest > 0:
            ops.add_sampled(grad_w, us, vs, rest)
        ops.flush_sampled(grad_w)
        del us, vs
        grad_w.masked_fill_(zero, 0.0)
        grad_w.add_(torch.index_select(u_first, 0, row, out=tmp))
        if v_first is not None:
            grad_w.add_(torch.index_select(v_first, 0, col, out=tmp))
        return grad_w, None, None, None, None, None, None, None


@torch.compiler.disable   # one graph break, no recompilation per edge list
def _sinkhorn(row: Tensor, col: Tensor, weight: Tensor, num_nodes: int, num_iters: int,
              balanced: bool, eps: Optional[float] = None,
              edge_index: Optional[Tensor] = None) -> Tensor:
    """The iterations, without input checks (the hot path of the modules).
    ``edge_index``: the tensor whose rows are ``col`` and ``row``, for the CSR
    pattern cached with it (else one is built per call)."""
    eps = _eps(weight, eps)
    if weight.numel() == 0:
        return weight.clone()
    if torch.is_grad_enabled() and weight.requires_grad:
        return _SinkhornFunction.apply(weight, row, col, num_nodes, num_iters, bool(balanced),
                                       eps, edge_index)
    with torch.no_grad():
        it = _Iterations(_edge_ops(row, col, weight, num_nodes, edge_index), bool(balanced),
                         eps)
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

    The iterate after :math:`k` iterations is the input scaled by cumulative
    per-node factors, :math:`A^{(k)}_{i,j} = P^{(k)}_i A_{i,j} Q^{(k)}_j`, and
    its row and column sums are :math:`P \circ (A Q)` and
    :math:`Q \circ (A^\top P)`: every half-step is one sparse
    matrix-vector product with the input weights (CSR, one pass over the
    ``E`` edges, no ``[E]`` temporary; never :math:`N \times N`). The
    backward pass (a hand-written reverse pass, the exact gradient of the
    unrolled iterations) runs on :math:`O(N)` vectors, one product per
    half-step, and sums the weights' rank-one terms over the edges with a
    sampled dense-dense product (SDDMM) per buffer of them; it keeps the
    input weights and :math:`O(N)` scalings per iteration, at most one
    ``[E]`` vector of them; beyond that it keeps :math:`O(N\sqrt{K})`
    checkpointed scalings and recomputes (one extra forward pass). Its
    memory does not grow with :math:`K` in units of ``E``. The CSR pattern
    is built once per ``edge_index`` tensor and shared with
    :func:`~graphsparse.graph._ops.weighted_aggregate`. Not twice
    differentiable.

    * Zero weights stay exactly zero (entries are only ever rescaled).
    * Rows and columns whose sum is ``<= eps`` are left as they are: their
      degree is replaced by one before it is inverted, so there is no NaN or
      inf in the forward or the backward pass.
    * Float32 needs no log-domain path where a doubly stochastic scaling
      exists (a pattern with total support, e.g. any graph with all its
      self-loops, as :class:`~graphsparse.graph.GatedAdjacency` adds by
      default): the iterate's entries lie in :math:`[0, 1]` after the first
      row normalization, only degrees above ``eps`` are inverted, and the
      scalings converge (tested with degrees of :math:`10^4` and weights in
      :math:`[10^{-8}, 1]` against float64).
    * **Known limitation**: on a pattern without such a scaling (a star
      without self-loops, a triangular pattern) the cumulative scalings
      drift apart geometrically, and after enough iterations (about 40 in
      float32 and 400 in float64 on a 10-leaf star; sooner on bigger stars)
      they overflow: the output becomes zeros or NaN. Keep the self-loops in
      the candidates (and out of the gates, ``gate_self_loops=False``) for
      Sinkhorn on such graphs.

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
    out = _sinkhorn(row, col, edge_weight, num_nodes, num_iters, bool(balanced), eps,
                    edge_index)
    if return_error:
        return out, sinkhorn_error(row, col, out, num_nodes, eps)
    return out
