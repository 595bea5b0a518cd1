r"""Sinkhorn normalization of a sparse adjacency given as an edge list
(paper, section "GCN"; Sinkhorn & Knopp 1967; Knight 2008).

Same convention as :mod:`graphsparse.graph.norm`: the edge ``(j, i)`` is the
entry :math:`A_{i,j}`; rows are targets ``edge_index[1]``, columns sources
``edge_index[0]``.
"""
from __future__ import annotations

import math
from typing import Iterator, List, Optional, Tuple, Union

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from ..core import group_reduce
from ..utils.validation import check_positive_int
from . import _revolve
from ._ops import _cached_pattern, _csr, _eager, _Pattern, _pattern, _sddmm, _spmv, scale_edges
from ._validate import check_graph
from .norm import inv_degree


def _eps(weight: Tensor, eps: Optional[float]) -> float:
    # sqrt(tiny): the gradient of 1/d, -1/d^2, stays finite for every d > eps.
    return math.sqrt(torch.finfo(weight.dtype).tiny) if eps is None else float(eps)


def _sinkhorn_autograd(row: Tensor, col: Tensor, weight: Tensor, num_nodes: int,
                       num_iters: int, balanced: bool, eps: Optional[float] = None,
                       marginals: Optional[Tensor] = None) -> Tensor:
    """The unrolled iterations under plain autograd, which keeps ``E + N``
    values per half-step: the reference of :class:`_SinkhornFunction`."""
    eps = _eps(weight, eps)
    e = 0.5 if balanced else 1.0

    def scale(d: Tensor, i: int) -> Tensor:
        # (t / d)^e above eps, 1 below
        s = inv_degree(d, e, eps)
        if marginals is None:
            return s
        return torch.where(d > eps, s * marginals[i].to(s.dtype) ** e, torch.ones_like(s))

    a = weight
    for _ in range(num_iters):
        if balanced:
            r = scale(group_reduce(a, row, num_nodes), 0)
            c = scale(group_reduce(a, col, num_nodes), 1)
            a = scale_edges(a, r, row, c, col)
        else:
            a = scale_edges(a, scale(group_reduce(a, row, num_nodes), 0), row)
            a = scale_edges(a, scale(group_reduce(a, col, num_nodes), 1), col)
    return a


def _stores_all(num_iters: int, num_nodes: int, num_edges: int) -> bool:
    # Every iteration's scalings and degrees (4N values) fit in one [E] vector.
    return 4 * num_iters * num_nodes <= num_edges


def _num_checkpoints(num_nodes: int, num_edges: int) -> int:
    # Checkpoints of the scalings (2N values each) within a quarter of an
    # [E] vector, at least two: a fixed memory, whatever the iterations.
    return max(2, num_edges // (8 * max(num_nodes, 1)))


def _inv_(d: Tensor, exponent: float, eps: float, out: Tensor, alive: Tensor,
          target: Optional[Tensor] = None) -> Tensor:
    # inv_degree(d, exponent, eps) written into out, times target (the
    # marginal to the exponent) where alive: d > eps (a bool buffer).
    torch.gt(d, eps, out=alive)
    one = torch.ones((), dtype=d.dtype, device=d.device)
    torch.where(alive, d, one, out=out)
    out = out.reciprocal_() if exponent == 1.0 else out.rsqrt_()
    if target is not None:
        torch.where(alive, out.mul_(target), one, out=out)
    return out


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
    edge summed into a gradient (:meth:`accumulate`, :meth:`add_sampled`,
    :meth:`result`: an SDDMM). Weights of another dtype than float32/float64
    (no MKL kernel) take gathers and scatter-sums.

    Every ``[E]`` vector it needs (the CSR values in both orders, the
    accumulator) comes from a pool of buffers (``buffers``, more allocated
    when it is empty) that :meth:`release` refills: the backward pass
    allocates three ``[E]`` vectors and the forward two, not one per use
    (eight and four before), which leaves the allocator fewer freed blocks
    to place the next ones in."""

    def __init__(self, row: Tensor, col: Tensor, weight: Tensor, num_nodes: int,
                 pattern: _Pattern, buffers: Optional[List[Tensor]] = None) -> None:
        self.row, self.col, self.weight, self.n = row, col, weight, num_nodes
        self.pattern = pattern
        self.csr = weight.dtype in (torch.float32, torch.float64)
        self.pool: List[Tensor] = [] if buffers is None else buffers
        self._a: Optional[Tensor] = None       # the CSR matrices, built on first use
        self._a_t: Optional[Tensor] = None
        # their values (kept apart: values() of a CSR tensor is a view of it,
        # which a buffer handed out again must not be)
        self._values: List[Tensor] = []
        self._acc: Optional[Tensor] = None     # the gradient add_sampled sums into
        self._acc_csr: Optional[Tensor] = None  # ... as CSR values in the transposed order

    def buffer(self) -> Tensor:
        """An ``[E]`` vector from the pool (uninitialized)."""
        return self.pool.pop() if self.pool else torch.empty_like(self.weight)

    def _permuted(self, perm: Optional[Tensor]) -> Tensor:
        # the weights in the order perm (itself for the identity), in a pool buffer
        if perm is None:
            return self.weight
        values = torch.index_select(self.weight, 0, perm, out=self.buffer())
        self._values.append(values)
        return values

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
            self._a_t = _csr(p.crow_t, p.col_t, self._permuted(p.perm_t), self.n)
        elif not transposed and self._a is None:
            self._a = _csr(p.crow, p.col, self._permuted(p.perm), self.n)
        a = self._a_t if transposed else self._a
        assert a is not None
        return _spmv(a, v, out)

    def release(self) -> None:
        """Drops the CSR matrices; their values go back to the pool."""
        self.pool.extend(self._values)
        self._values.clear()
        self._a = self._a_t = None

    def _sddmm_in_place(self, e: int, device: torch.device) -> bool:
        # as _sddmm: sampled_addmm fails on more entries than an N x N matrix has
        return self.csr and device.type == "cpu" and e <= self.n * self.n

    def accumulate(self, grad: Tensor) -> None:
        """Makes ``grad`` (``[E]``, edge order; taken over) the vector
        :meth:`add_sampled` adds into. On the CPU the terms accumulate in
        place in one CSR tensor over the transposed pattern (``sampled_addmm``
        with ``beta=1``): ``grad`` is moved into that order once."""
        p = self.pattern
        self._acc, self._acc_csr = grad, None
        if not self._sddmm_in_place(grad.numel(), grad.device):
            return
        if p.perm_t is not None:
            self._acc = torch.index_select(grad, 0, p.perm_t, out=self.buffer())
            self.pool.append(grad)
        self._acc_csr = _csr(p.crow_t, p.col_t, self._acc, self.n)

    def add_sampled(self, a: Tensor, b: Tensor, rank: int) -> None:
        r"""Adds ``sum_{k < rank} a[row(e), k] b[col(e), k]`` (an SDDMM from
        ``[N, R]`` factors) to every edge's entry of the accumulated vector.
        Below ``_SDDMM_MIN_RANK`` the factors' next columns are zeroed and
        taken along (``R`` must allow it)."""
        if rank < _SDDMM_MIN_RANK:
            a[:, rank:_SDDMM_MIN_RANK].zero_()
            b[:, rank:_SDDMM_MIN_RANK].zero_()
            rank = _SDDMM_MIN_RANK
        # contiguous [N, R] rows (strided factors make the product several times slower)
        a, b = a[:, :rank].contiguous(), b[:, :rank].contiguous()
        assert self._acc is not None, "accumulate() first"
        acc = self._acc_csr
        if acc is not None:     # in place in the values, self._acc
            torch.sparse.sampled_addmm(acc, b, a.t(), beta=1.0, out=acc)
            return
        p = self.pattern
        _sddmm(a, b, p.crow_t, p.col_t, p.perm_t, self.weight, chunked=True, out=self._acc)

    def result(self) -> Tensor:
        """The accumulated vector in edge order (``[E]``); call
        :meth:`release` first to let it reuse the CSR values' buffer."""
        vals, transposed = self._acc, self._acc_csr is not None
        self._acc = self._acc_csr = None
        assert vals is not None, "accumulate() first"
        perm_t = self.pattern.perm_t
        if not transposed or perm_t is None:
            return vals
        out = self.buffer().index_copy_(0, perm_t, vals)
        self.pool.append(vals)
        return out


class _Iterations:
    r"""Sinkhorn on cumulative per-node scalings ``p, q`` (the iterate is
    ``weight * p[row] * q[col]``): every half-step is one sparse
    matrix-vector product with the fixed weights, the row sums of the
    iterate being :math:`p \circ (W q)` and its column sums
    :math:`q \circ (W^\top p)`."""

    def __init__(self, ops: _EdgeOps, balanced: bool, eps: float,
                 marginals: Optional[Tensor] = None) -> None:
        self.ops, self.balanced, self.eps = ops, balanced, eps
        self.exponent = 0.5 if balanced else 1.0
        weight = ops.weight
        # the target row and column sums to the exponent ([2, N]; None: ones)
        self.targets = (None if marginals is None
                        else marginals.to(weight.dtype) ** self.exponent)
        self.s = weight.new_empty(ops.n)
        self.alive = torch.empty(ops.n, dtype=torch.bool, device=weight.device)

    def step(self, p: Tensor, q: Tensor, d_r: Tensor, d_c: Tensor) -> None:
        """One iteration: updates ``p, q`` in place, writes the degrees."""
        t_r, t_c = (None, None) if self.targets is None else self.targets
        self.ops.rows(q, d_r).mul_(p)
        if self.balanced:
            self.ops.cols(p, d_c).mul_(q)
            p.mul_(_inv_(d_r, 0.5, self.eps, self.s, self.alive, t_r))
            q.mul_(_inv_(d_c, 0.5, self.eps, self.s, self.alive, t_c))
            return
        p.mul_(_inv_(d_r, 1.0, self.eps, self.s, self.alive, t_r))
        self.ops.cols(p, d_c).mul_(q)
        q.mul_(_inv_(d_c, 1.0, self.eps, self.s, self.alive, t_c))

    def output(self, p: Tensor, q: Tensor) -> Tensor:
        """The iterate ``weight * p[row] * q[col]`` (``[E]``), in the CSR
        values' buffers, which it releases."""
        ops = self.ops
        ops.release()
        out = torch.index_select(p, 0, ops.row, out=ops.buffer()).mul_(ops.weight)
        return out.mul_(torch.index_select(q, 0, ops.col, out=ops.buffer()))


def _run_storing(it: _Iterations, num_iters: int, spine: List[int], pq: Tensor,
                 slots: Tensor) -> None:
    """Runs ``num_iters`` iterations on ``pq`` ([2, N], in place), copying
    the scalings after ``spine[i]`` iterations into ``slots[i]``."""
    deg = torch.empty_like(pq)
    done = 0
    for i, k in enumerate(spine + [num_iters]):
        for _ in range(k - done):
            it.step(pq[0], pq[1], deg[0], deg[1])
        done = k
        if i < len(spine):
            slots[i].copy_(pq)


def _recomputed_steps(it: _Iterations, num_iters: int, spine: List[int],
                      slots: Tensor) -> Iterator[Tuple[int, Tensor, Tensor, Tensor]]:
    """``(k, scalings before iteration k, after it, its degrees)`` (``[2, N]``
    buffers, valid until the next item) for ``k = K - 1, ..., 0``,
    recomputed from the checkpoints ``slots`` (the first ``len(spine)``
    holding the scalings after the ``spine`` iterations; all are reused)."""
    work = slots.new_empty(3, 2, slots.size(-1))
    after, deg = work[1], work[2]

    def advance(pq: Tensor, steps: int) -> None:
        for _ in range(steps):
            it.step(pq[0], pq[1], deg[0], deg[1])

    stored = {k: slots[i] for i, k in enumerate(spine)}
    free = [slots[i] for i in range(len(spine), slots.size(0))]
    start = slots.new_ones(2, slots.size(-1))
    for k, before in _revolve.reversed_states(num_iters, start, free, stored, work[0], advance):
        after.copy_(before)
        advance(after, 1)
        yield k, before, after, deg


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
    keeps a fixed number ``S`` of checkpoints of the scalings
    (:func:`_num_checkpoints`: :math:`2NS \le E/4` values, at least two),
    and backward recomputes the iterations from them by binomial
    checkpointing (:mod:`._revolve`): memory independent of ``K``, about
    :math:`(S!\,K)^{1/S}` evaluations per iteration (50 iterations with two
    checkpoints: 185 evaluations besides the forward's 50).

    Backward is the exact reverse pass of the unrolled half-steps, in
    :math:`O(N)` vectors: a half-step :math:`d = P \circ (W Q)`,
    :math:`P' = P\, s(d)` sends :math:`\bar P = \bar P' (s + s'(d)\, d)`,
    :math:`\bar Q \mathrel{+}= W^\top u` with :math:`u = \bar P' P^2 s'(d)`,
    and to the weights the rank-one term :math:`u_i Q_j`; the rank-one terms
    are summed over the edges by one sampled product (SDDMM) per buffer of
    them, rank two per iteration. Saved: ``weight`` and :math:`\min(4NK, E)`
    or :math:`2NS` values."""

    @staticmethod
    def forward(ctx, weight: Tensor, row: Tensor, col: Tensor, num_nodes: int, num_iters: int,
                balanced: bool, eps: float, edge_index: Optional[Tensor],
                marginals: Optional[Tensor]) -> Tensor:
        it = _Iterations(_edge_ops(row, col, weight, num_nodes, edge_index), balanced, eps,
                         marginals)
        ctx.num_nodes, ctx.num_iters, ctx.balanced, ctx.eps = num_nodes, num_iters, balanced, eps
        ctx.marginals = marginals        # [2, N] or None; not differentiated
        ctx.edge_index = edge_index      # for the cached pattern; not differentiated
        # Every iteration's 4N values when they are at most one [E] vector;
        # else checkpoints, the iterations recomputed backward.
        ctx.store_all = _stores_all(num_iters, num_nodes, weight.numel())
        if ctx.store_all:
            pq = weight.new_ones(num_iters + 1, 2, num_nodes)
            deg = weight.new_empty(num_iters, 2, num_nodes)
            for k in range(num_iters):
                pq[k + 1].copy_(pq[k])
                it.step(pq[k + 1, 0], pq[k + 1, 1], deg[k, 0], deg[k, 1])
            ctx.save_for_backward(weight, row, col, pq, deg)
            return it.output(pq[-1, 0], pq[-1, 1])
        slots = weight.new_empty(_num_checkpoints(num_nodes, weight.numel()), 2, num_nodes)
        ctx.spine = _revolve.spine(num_iters, 1 + slots.size(0))
        pq = weight.new_ones(2, num_nodes)
        _run_storing(it, num_iters, ctx.spine, pq, slots)
        # On ctx, not saved: backward reuses the checkpoints' buffers (and
        # recomputes them for a second backward).
        ctx.slots, ctx.consumed = slots, False
        ctx.save_for_backward(weight, row, col, pq)     # and the final scalings
        return it.output(pq[0], pq[1])

    @staticmethod
    @once_differentiable
    @_eager
    def backward(ctx, grad: Tensor):
        weight, row, col, *saved = ctx.saved_tensors
        n, balanced, eps = ctx.num_nodes, ctx.balanced, ctx.eps
        ops = _edge_ops(row, col, weight, n, ctx.edge_index)
        it = _Iterations(ops, balanced, eps, ctx.marginals)
        exponent, targets = it.exponent, it.targets
        zero = weight == 0
        # The zeros' own gradient would only flow back to themselves: dropped.
        g = grad.masked_fill(zero, 0.0)
        if ctx.store_all:
            pq, deg = saved                    # every iteration's scalings and degrees
            p_k, q_k = pq[-1, 0], pq[-1, 1]
            steps: Iterator[Tuple[int, Tensor, Tensor, Tensor]] = (
                (k, pq[k], pq[k + 1], deg[k]) for k in reversed(range(ctx.num_iters)))
        else:
            p_k, q_k = saved[0]                # the final scalings
            slots = ctx.slots
            if ctx.consumed:                   # a second backward (retain_graph=True)
                _run_storing(it, ctx.num_iters, ctx.spine, weight.new_ones(2, n), slots)
            ctx.consumed = True
            steps = _recomputed_steps(it, ctx.num_iters, ctx.spine, slots)
        # out = w p[row] q[col]: the weights' own term and the scalings'
        # gradients. Three [E] vectors in all (g, tmp, grad_w), which the
        # products below take as their buffers.
        tmp = torch.index_select(q_k, 0, col)
        grad_w = torch.index_select(p_k, 0, row).mul_(g).mul_(tmp)
        gw = _EdgeOps(row, col, g.mul_(weight), n, ops.pattern, buffers=[tmp])
        p_bar = gw.rows(q_k, weight.new_empty(n))
        gw.release()                           # one [E] vector of CSR values at a time
        q_bar = gw.cols(p_k, weight.new_empty(n))
        gw.release()
        ops.pool = gw.pool + [g]
        del gw, g, tmp
        ops.accumulate(grad_w)
        del grad_w
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
        for _, (p_old, q_old), (p_new, _), d in steps:
            if fill + 2 > cap:
                ops.add_sampled(us, vs, fill)
                fill = 0
            for i in range(2):
                # s = (t / d)^e and ds/dd = -e s / d above eps; 1 and 0 below.
                _inv_(d[i], exponent, eps, s[i], alive, None if targets is None else targets[i])
                torch.where(alive, d[i], one, out=slope[i])
                slope[i].reciprocal_().mul_(s[i]).mul_(-exponent).mul_(alive)
                torch.addcmul(s[i], slope[i], d[i], out=keep[i])
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
            ops.add_sampled(us, vs, rest)
        del us, vs
        ops.release()
        grad_w = ops.result().masked_fill_(zero, 0.0)
        tmp = ops.buffer()
        grad_w.add_(torch.index_select(u_first, 0, row, out=tmp))
        if v_first is not None:
            grad_w.add_(torch.index_select(v_first, 0, col, out=tmp))
        return grad_w, None, None, None, None, None, None, None, None


@torch.compiler.disable   # one graph break, no recompilation per edge list
def _sinkhorn(row: Tensor, col: Tensor, weight: Tensor, num_nodes: int, num_iters: int,
              balanced: bool, eps: Optional[float] = None,
              edge_index: Optional[Tensor] = None,
              marginals: Optional[Tensor] = None) -> Tensor:
    """The iterations, without input checks (the hot path of the modules).
    ``edge_index``: the tensor whose rows are ``col`` and ``row``, for the CSR
    pattern cached with it (else one is built per call); ``marginals``:
    ``[2, N]`` target row and column sums (None: ones)."""
    eps = _eps(weight, eps)
    if weight.numel() == 0:
        return weight.clone()
    if torch.is_grad_enabled() and weight.requires_grad:
        return _SinkhornFunction.apply(weight, row, col, num_nodes, num_iters, bool(balanced),
                                       eps, edge_index, marginals)
    with torch.no_grad():
        it = _Iterations(_edge_ops(row, col, weight, num_nodes, edge_index), bool(balanced),
                         eps, marginals)
        pq = weight.new_ones(2, num_nodes)
        deg = weight.new_empty(2, num_nodes)
        for _ in range(num_iters):
            it.step(pq[0], pq[1], deg[0], deg[1])
        return it.output(pq[0], pq[1])


@torch.no_grad()
def sinkhorn_error(row: Tensor, col: Tensor, weight: Tensor, num_nodes: int,
                   eps: Optional[float] = None, marginals: Optional[Tensor] = None) -> Tensor:
    """Largest deviation of the row and column sums from their targets (one,
    or ``marginals`` ``[2, N]``), over the rows and columns with a nonzero
    entry (a detached scalar tensor)."""
    eps = _eps(weight, eps)
    err = weight.new_zeros(())
    for i, index in enumerate((row, col)):
        s = group_reduce(weight, index, num_nodes)
        target = 1.0 if marginals is None else marginals[i].to(s.dtype)
        dev = torch.where(s > eps, (s - target).abs(), torch.zeros_like(s))
        if dev.numel() > 0:
            err = torch.maximum(err, dev.max())
    return err


def check_marginals(marginals: Optional[Tensor], num_nodes: int, name: str) -> Optional[Tensor]:
    """``marginals`` (``[N]`` for rows and columns alike, or ``[2, N]``) as a
    ``[2, N]`` tensor, checked: finite, positive, equal totals."""
    if marginals is None:
        return None
    if not isinstance(marginals, Tensor) or not marginals.is_floating_point():
        raise ValueError(f"'{name}' expects 'marginals' to be a floating-point tensor "
                         f"(got {type(marginals).__name__})")
    if marginals.shape == (num_nodes,):
        marginals = marginals.expand(2, num_nodes)
    if marginals.shape != (2, num_nodes):
        raise ValueError(f"'{name}' expects 'marginals' of shape [N] or [2, N] with "
                         f"N = {num_nodes} (got {tuple(marginals.shape)})")
    if not bool(torch.isfinite(marginals).all()) or not bool((marginals > 0).all()):
        raise ValueError(f"'{name}' expects finite, positive 'marginals' (the target row "
                         f"and column sums)")
    total_r, total_c = (float(t) for t in marginals.double().sum(1))
    if abs(total_r - total_c) > 1e-4 * max(total_r, total_c):
        raise ValueError(f"'{name}': the row marginals sum to {total_r:g} and the column "
                         f"marginals to {total_c:g}; Sinkhorn needs equal totals (every "
                         f"entry counts in one row and one column)")
    return marginals


def sinkhorn(edge_index: Tensor, edge_weight: Optional[Tensor] = None,
             num_nodes: Optional[int] = None, num_iters: int = 10, balanced: bool = False,
             eps: Optional[float] = None, return_error: bool = False,
             marginals: Optional[Tensor] = None) -> Union[Tensor, Tuple[Tensor, Tensor]]:
    r"""Sinkhorn normalization toward a doubly stochastic matrix, or toward
    given row and column sums (``marginals``).

    Standard (Sinkhorn-Knopp), per iteration:

    .. math::
        A \leftarrow D_r^{-1} A, \quad [D_r]_i = \textstyle\sum_j A_{i,j};
        \qquad A \leftarrow A D_c^{-1}, \quad [D_c]_j = \textstyle\sum_i A_{i,j}.

    Balanced (``balanced=True``), per iteration, both degrees taken from the
    same :math:`A` (the paper observes convergence numerically):

    .. math::
        A \leftarrow D_r^{-1/2} A D_c^{-1/2}.

    With ``marginals`` :math:`(r, c)` the targets of the row and column sums
    replace the ones: :math:`A \leftarrow \mathrm{diag}(r) D_r^{-1} A`,
    :math:`A \leftarrow A D_c^{-1} \mathrm{diag}(c)` (balanced:
    :math:`(r / D_r)^{1/2}` and :math:`(c / D_c)^{1/2}`), Sinkhorn-Knopp with
    prescribed marginals (:class:`~graphsparse.graph.GatedAdjacency`'s
    ``marginals="degree"`` uses the degrees, in GCN's frame).

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
    ``[E]`` vector of them; beyond that a fixed number of checkpoints of the
    scalings (a quarter of an ``[E]`` vector, at least two of :math:`2N`
    values) from which binomial checkpointing recomputes the iterations:
    its memory does not depend on :math:`K`, its backward time grows by
    about :math:`(S!\,K)^{1/S}` iterations per iteration. The CSR pattern
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
        return_error (bool): also return the largest deviation of the final
            row and column sums from their targets over nonempty rows and
            columns, a detached scalar tensor. (default: ``False``)
        marginals (Tensor, optional): ``[N]`` (rows and columns alike) or
            ``[2, N]`` (rows, columns) finite positive target sums with
            equal totals. (default: ``None``, all one)

    Shapes:
        - **output:** ``[E]`` weights aligned with ``edge_index`` (and a
          scalar error if ``return_error``).
    """
    edge_index, edge_weight, num_nodes = check_graph(edge_index, edge_weight, num_nodes,
                                                     "sinkhorn")
    check_positive_int(num_iters, "num_iters", "sinkhorn")
    marginals = check_marginals(marginals, num_nodes, "sinkhorn")
    if marginals is not None:
        marginals = marginals.to(edge_weight.device)
    row, col = edge_index[1], edge_index[0]
    out = _sinkhorn(row, col, edge_weight, num_nodes, num_iters, bool(balanced), eps,
                    edge_index, marginals)
    if return_error:
        return out, sinkhorn_error(row, col, out, num_nodes, eps, marginals)
    return out
