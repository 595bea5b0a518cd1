r"""Edge operations with hand-written backward passes that keep :math:`O(N)`
or :math:`O(E)` tensors instead of :math:`O(E \times C)` ones.

* :func:`scale_edges`: every edge scaled by one or two per-node factors.
* :func:`weighted_aggregate`: :math:`A H` for a weighted edge list, as a
  CSR sparse-matrix product forward, a transposed product and a sampled
  dense-dense product (SDDMM) backward.
"""
from __future__ import annotations

import warnings
import weakref
from collections import OrderedDict
from typing import Any, Callable, Dict, NamedTuple, Optional, Tuple, TypeVar, cast

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

_F = TypeVar("_F", bound=Callable[..., Any])


def _eager(fn: _F) -> _F:
    """Keeps ``fn`` out of compiled graphs (``torch.compiler.disable``): the
    backward passes that build CSR tensors, which dynamo cannot trace."""
    return cast(_F, torch.compiler.disable(fn))


# --------------------------------------------------------------- scale_edges


class _ScaleEdges(torch.autograd.Function):
    # out[e] = a[e] * s[index[e]] (* s2[index2[e]]): one zero mask per call,
    # however many factors.
    @staticmethod
    def forward(ctx, a: Tensor, s: Tensor, index: Tensor, s2: Optional[Tensor],
                index2: Optional[Tensor]) -> Tensor:
        ctx.save_for_backward(a, s, index, s2, index2)
        out = a * s.index_select(0, index)
        if s2 is None or index2 is None:
            return out
        return out.mul_(s2.index_select(0, index2))

    @staticmethod
    def backward(ctx, grad: Tensor):
        a, s, index, s2, index2 = ctx.saved_tensors
        # Exact zeros are structural (they stay zero and forward() drops them):
        # their gradient, which can overflow where s is huge, is not propagated.
        grad = grad.masked_fill(a == 0, 0.0)
        f1 = s.index_select(0, index)
        f2 = None if s2 is None or index2 is None else s2.index_select(0, index2)
        grad_a = grad_s = grad_s2 = None
        if ctx.needs_input_grad[0]:
            grad_a = grad * f1 if f2 is None else grad * f1 * f2
        if ctx.needs_input_grad[1]:
            ga = grad * a if f2 is None else grad * a * f2
            grad_s = torch.zeros_like(s).index_add_(0, index, ga)
        if f2 is not None and index2 is not None and ctx.needs_input_grad[3]:
            grad_s2 = torch.zeros_like(s2).index_add_(0, index2, grad * a * f1)
        return grad_a, grad_s, None, grad_s2, None


def scale_edges(a: Tensor, s: Tensor, index: Tensor, s2: Optional[Tensor] = None,
                index2: Optional[Tensor] = None) -> Tensor:
    r""":math:`a_e\, s_{\mathrm{index}[e]}` (times :math:`s2_{\mathrm{index2}[e]}`
    when given): every edge scaled by one or two per-node factors. Autograd
    saves ``a`` and the factors (``E + N`` values) instead of the gathered
    ``s[index]`` (``E`` more), and the two-factor form builds one zero mask
    where two chained calls build two. The gradient of the outputs that are
    exactly zero is dropped: it would only flow back to the zero itself (its
    scaled value stays zero), and ``s`` can be large enough there to turn it
    into inf and then NaN."""
    if (s2 is None) != (index2 is None):
        raise ValueError("'scale_edges' needs 's2' and 'index2' together")
    return _ScaleEdges.apply(a, s, index, s2, index2)


# -------------------------------------------------------- weighted_aggregate

class _Pattern(NamedTuple):
    """The sparsity pattern of :math:`A` (``A[dst, src] = w``) in both CSR
    orientations. The transposed one (rows = sources) is the edge order
    itself when the edges are sorted by source, as coalesced edges are."""
    crow: Tensor                 # [N + 1] row pointers of A (rows: targets)
    col: Tensor                  # [E] sources, in target order
    perm: Tensor                 # [E] edge of every entry of A (int32 below 2^31 edges)
    crow_t: Tensor               # [N + 1] row pointers of A^T (rows: sources)
    col_t: Tensor                # [E] targets, in source order
    perm_t: Optional[Tensor]     # [E] edge of every entry of A^T; None: identity


def _csr(crow: Tensor, col: Tensor, values: Tensor, num_nodes: int,
         num_cols: Optional[int] = None) -> Tensor:
    # num_nodes x num_nodes, or num_nodes x num_cols
    with warnings.catch_warnings():     # "CSR support is in beta": once, and not the user's
        warnings.simplefilter("ignore", UserWarning)
        size = (num_nodes, num_nodes if num_cols is None else num_cols)
        return torch.sparse_csr_tensor(crow, col, values, size, check_invariants=False)


def _spmm(a: Tensor, h: Tensor) -> Tensor:
    # addmm into an uninitialized output that is also its own `out` (beta=0
    # never reads it): torch.sparse.mm(a, h) allocates the [N, C] result
    # twice, and on the CPU addmm into a fresh result copies `self` into it
    # first (measured there; other devices keep the plain call).
    out = h.new_empty(a.size(0), h.size(1))
    if h.device.type == "cpu":
        return torch.addmm(out, a, h, beta=0.0, out=out)
    return torch.addmm(out, a, h, beta=0.0)


def _spmv(a: Tensor, v: Tensor, out: Tensor) -> Tensor:
    # A v written into out ([N]): the [N, 1] product of _spmm, no allocation on the CPU
    if v.device.type != "cpu":
        return out.copy_(_spmm(a, v.unsqueeze(1)).view(-1))
    o = out.unsqueeze(1)
    torch.addmm(o, a, v.unsqueeze(1), beta=0.0, out=o)
    return out


def _row_pointers(index: Tensor, num_nodes: int) -> Tensor:
    crow = index.new_zeros(num_nodes + 1)
    torch.cumsum(torch.bincount(index, minlength=num_nodes), 0, out=crow[1:])
    return crow


def _pattern(src: Tensor, dst: Tensor, num_nodes: int) -> _Pattern:
    src, dst = src.long(), dst.long()
    # node ids outside [0, N) would index past the CSR rows (unchecked):
    # one check (a host sync) per new edge list
    if src.numel():
        low, high = torch.stack([torch.minimum(src.min(), dst.min()),
                                 torch.maximum(src.max(), dst.max())]).tolist()
        if low < 0 or high >= num_nodes:
            raise ValueError(f"edge_index holds node ids in [{low}, {high}], outside "
                             f"[0, {num_nodes}) for {num_nodes} nodes (the rows of the features)")
    perm = torch.sort(dst, stable=True).indices
    crow = _row_pointers(dst, num_nodes)
    col = src.index_select(0, perm)
    crow_t = _row_pointers(src, num_nodes)
    if max(src.numel(), num_nodes) < 2**31:
        # int32 indices: 4 bytes per edge each instead of 8, and a CPU (MKL)
        # product as fast or faster (benchmarks/scale.py)
        crow, col, perm, crow_t = crow.int(), col.int(), perm.int(), crow_t.int()
    # One check (a host sync) per new edge list: coalesced edges need no sort.
    if src.numel() <= 1 or bool((src[1:] >= src[:-1]).all()):
        # a copy, not a view: a view of edge_index would keep it alive, so the
        # weak reference of the cache (_PATTERNS) would never fire: a leak of one
        # pattern per new edge list (every training step)
        return _Pattern(crow, col, perm, crow_t, dst.to(col.dtype, copy=True), None)
    perm_t = torch.sort(src, stable=True).indices
    return _Pattern(crow, col, perm, crow_t, dst.index_select(0, perm_t).to(col.dtype), perm_t)


# Patterns of live edge lists, one per tensor and dropped with it: the layers
# of a model share one edge list per forward pass (and a fixed graph keeps
# its pattern as long as its edge_index lives, like PyG's cached=True).
_PATTERNS: Dict[int, Tuple[weakref.ref, int, int, _Pattern]] = {}


def _cached_pattern(edge_index: Tensor, num_nodes: int) -> _Pattern:
    key = id(edge_index)
    entry = _PATTERNS.get(key)
    if (entry is not None and entry[0]() is edge_index and entry[1] == edge_index._version
            and entry[2] == num_nodes):
        return entry[3]
    pattern = _pattern(edge_index[0], edge_index[1], num_nodes)
    _cache_pattern(edge_index, num_nodes, pattern)
    return pattern


def _cache_pattern(edge_index: Tensor, num_nodes: int, pattern: _Pattern) -> None:
    key = id(edge_index)

    def drop(_: object) -> None:
        _PATTERNS.pop(key, None)

    ref = weakref.ref(edge_index, drop)
    _PATTERNS[key] = (ref, edge_index._version, num_nodes, pattern)


def _subset_pattern(parent: _Pattern, keep: Tensor) -> _Pattern:
    """The pattern of the edges ``keep`` (``[E]`` bool) of ``parent``'s edge
    list, in their order, derived without a sort: O(E) gathers and prefix
    sums. A subset of a row-sorted list is row-sorted, and the surviving
    entries keep their order in both orientations."""
    e = keep.numel()
    dtype = parent.col.dtype
    new_id = torch.cumsum(keep, 0).sub_(1)              # [E] new id of each kept edge

    def orientation(perm: Optional[Tensor], crow: Tensor, col: Tensor):
        mask = keep if perm is None else keep.index_select(0, perm.long())
        count = torch.zeros(e + 1, dtype=torch.long, device=keep.device)
        torch.cumsum(mask, 0, out=count[1:])
        sel = mask.nonzero().view(-1)
        sub_perm = None
        if perm is not None:
            sub_perm = new_id.index_select(0, perm.long().index_select(0, sel)).to(perm.dtype)
        return count.index_select(0, crow.long()).to(dtype), col.index_select(0, sel), sub_perm

    crow, col, perm = orientation(parent.perm, parent.crow, parent.col)
    crow_t, col_t, perm_t = orientation(parent.perm_t, parent.crow_t, parent.col_t)
    assert perm is not None
    return _Pattern(crow, col, perm, crow_t, col_t, perm_t)


def select_edges(edge_index: Tensor, keep: Tensor, num_nodes: int) -> Tensor:
    """``edge_index[:, keep]`` (``keep``: ``[E]`` bool), whose CSR pattern for
    the sparse products is derived from ``edge_index``'s cached one (built
    once for a stored edge list) instead of sorted afresh: what a learned
    adjacency that drops its exact zeros needs every step."""
    sub = edge_index[:, keep]
    _cache_pattern(sub, num_nodes, _subset_pattern(_cached_pattern(edge_index, num_nodes), keep))
    return sub


# Transposed patterns of sparse CSR features, for the weight gradient of
# sparse_linear: a few feature matrices live per process (their dropout keeps
# the pattern: the same index tensors, new values), so a small cache that
# holds the index tensors (their addresses cannot be reused while it does).
_TRANSPOSED: "OrderedDict[tuple, tuple]" = OrderedDict()
_TRANSPOSED_MAX = 4


def _transposed_pattern(x: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    crow, col = x.crow_indices(), x.col_indices()
    key = (crow.data_ptr(), col.data_ptr(), col.numel(), tuple(x.shape), x.device)
    entry = _TRANSPOSED.get(key)
    if entry is not None:
        _TRANSPOSED.move_to_end(key)
        return entry[1]
    rows = torch.repeat_interleave(torch.arange(x.size(0), device=x.device), crow.diff())
    perm = torch.sort(col, stable=True).indices              # entry of every X^T entry
    crow_t = _row_pointers(col, x.size(1))
    pattern = (crow_t, rows.index_select(0, perm).to(col.dtype), perm)
    _TRANSPOSED[key] = ((crow, col), pattern)
    while len(_TRANSPOSED) > _TRANSPOSED_MAX:
        _TRANSPOSED.popitem(last=False)
    return pattern


class _SparseLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor) -> Tensor:
        ctx.save_for_backward(x.values())
        ctx.x_shape = x.shape
        ctx.pattern = _transposed_pattern(x)
        return torch.sparse.mm(x, weight.t())

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        (values,) = ctx.saved_tensors
        crow_t, col_t, perm = ctx.pattern
        xt = _csr(crow_t, col_t, values.index_select(0, perm), ctx.x_shape[1], ctx.x_shape[0])
        return None, torch.sparse.mm(xt, grad).t()


def sparse_linear(x: Tensor, weight: Tensor, bias: Optional[Tensor] = None) -> Tensor:
    r""":func:`torch.nn.functional.linear` (:math:`X W^\top + b`) for sparse
    CSR features ``x`` that need no gradient, whose weight gradient
    :math:`G^\top X = (X^\top G)^\top` reads :math:`X^\top` from a
    transposed pattern built once per feature matrix (dropout keeps it)
    instead of sorting the entries every backward pass, as ``F.linear``
    does. Any other input goes to ``F.linear``.

    Args:
        x (Tensor): ``[N, F]`` features, sparse CSR (or dense).
        weight (Tensor): ``[C, F]``, as ``nn.Linear.weight``.
        bias (Tensor, optional): ``[C]``.

    Shapes:
        - **output:** ``[N, C]``
    """
    if (x.layout != torch.sparse_csr or x.requires_grad or x.dim() != 2
            or weight.dtype != x.dtype):
        return F.linear(x, weight, bias)
    out = _SparseLinear.apply(x, weight)
    return out if bias is None else out + bias


_CHUNK_VALUES = 1 << 20     # gathered values per chunk of the chunked SDDMM (4 MiB in float32)


def _sddmm(grad: Tensor, h: Tensor, crow_t: Tensor, col_t: Tensor, perm_t: Optional[Tensor],
           weight: Tensor, chunked: bool = False, out: Optional[Tensor] = None) -> Tensor:
    r""":math:`\partial L / \partial w_e = \langle g_{\mathrm{dst}[e]},
    h_{\mathrm{src}[e]}\rangle` for every edge, in edge order (added into
    ``out`` when given). On the CPU ``torch.sparse.sampled_addmm`` on the
    transposed pattern (``weight``: any ``[E]`` values, only its pattern is
    read); elsewhere (or ``chunked``) chunks of edges, so that at most
    ``2 x _CHUNK_VALUES`` gathered values are alive at once."""
    num_nodes, e = h.size(0), col_t.numel()
    # sampled_addmm fails on more entries than an N x N matrix has (duplicates).
    if not chunked and h.device.type == "cpu" and e <= num_nodes * num_nodes:
        at = _csr(crow_t, col_t, weight, num_nodes)
        vals = torch.sparse.sampled_addmm(at, h, grad.t(), beta=0.0).values()
    else:
        src = torch.repeat_interleave(torch.arange(num_nodes, device=h.device),
                                      crow_t.diff())
        vals = h.new_empty(e)
        step = max(1, _CHUNK_VALUES // max(h.size(1), 1))
        for i in range(0, e, step):
            torch.linalg.vecdot(grad.index_select(0, col_t[i:i + step]),
                                h.index_select(0, src[i:i + step]), out=vals[i:i + step])
    if out is not None:
        return out.add_(vals) if perm_t is None else out.index_add_(0, perm_t, vals)
    if perm_t is None:
        return vals
    return torch.empty_like(vals).index_copy_(0, perm_t, vals)


class _EdgeDot(torch.autograd.Function):
    # <a_dst(e), b_src(e)> per edge: an SDDMM forward; backward A_g b and
    # A_g^T a, CSR products with the edge gradients g as values.
    @staticmethod
    def forward(ctx, a: Tensor, b: Tensor, pattern: _Pattern) -> Tensor:
        ctx.pattern = pattern
        ctx.save_for_backward(a, b)
        # the SDDMM reads only the pattern of its values argument: zeros
        out = _sddmm(a, b, pattern.crow_t, pattern.col_t, pattern.perm_t,
                     a.new_zeros(pattern.col_t.numel()))
        # on edges sorted by source the CPU SDDMM returns the values of its
        # sparse result: a view, which in-place ops and dynamo refuse (and
        # which keeps that result's indices alive)
        return out if out._base is None else out.clone()

    @staticmethod
    @once_differentiable
    @_eager
    def backward(ctx, grad: Tensor):
        a, b = ctx.saved_tensors
        p, n = ctx.pattern, a.size(0)
        grad = grad.contiguous()
        grad_a = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_a = _spmm(_csr(p.crow, p.col, grad.index_select(0, p.perm), n), b)
        if ctx.needs_input_grad[1]:
            g_t = grad if p.perm_t is None else grad.index_select(0, p.perm_t)
            grad_b = _spmm(_csr(p.crow_t, p.col_t, g_t, n), a)
        return grad_a, grad_b, None


@torch.compiler.disable   # as weighted_aggregate: one graph break, no tracing of the pattern
def edge_dot(a: Tensor, b: Tensor, edge_index: Tensor) -> Tensor:
    r"""The dot product of every edge's endpoint features,

    .. math::
        s_e = \langle a_{\mathrm{dst}(e)},\, b_{\mathrm{src}(e)} \rangle,
        \qquad \frac{\partial L}{\partial a} = S\, b, \quad
        \frac{\partial L}{\partial b} = S^\top a, \quad
        S_{\mathrm{dst}(e), \mathrm{src}(e)} = \frac{\partial L}{\partial s_e},

    equal to ``(a[edge_index[1]] * b[edge_index[0]]).sum(-1)`` without its
    ``[E, C]`` gathers: one sampled dense-dense product (SDDMM) forward and
    two CSR products backward, on the CSR pattern the aggregation caches for
    the same ``edge_index`` (duplicate edges and any order allowed). Memory
    :math:`O(E + NC)`. Features of another dtype than float32/float64 take
    the gathered form. Not twice differentiable.

    Shapes: ``a``, ``b`` ``[N, C]``, ``edge_index`` ``[2, E]`` -> ``[E]``.
    """
    if (a.dtype not in (torch.float32, torch.float64) or b.dtype != a.dtype
            or a.shape != b.shape or a.dim() != 2):
        return (a.index_select(0, edge_index[1]) * b.index_select(0, edge_index[0])).sum(-1)
    pattern = _cached_pattern(edge_index, a.size(0))
    return _EdgeDot.apply(a.contiguous(), b.contiguous(), pattern)


def edge_cosine(h: Tensor, edge_index: Tensor, eps: float = 1e-8) -> Tensor:
    r"""The cosine similarity of the endpoints of every edge,

    .. math::
        c_e = \frac{\langle h_{\mathrm{src}(e)}, h_{\mathrm{dst}(e)} \rangle}
        {\max(\lVert h_{\mathrm{src}(e)} \rVert, \epsilon)\,
         \max(\lVert h_{\mathrm{dst}(e)} \rVert, \epsilon)},

    equal to ``F.cosine_similarity(h[src], h[dst])`` without its two
    ``[E, C]`` gathers: the rows are normalized once (``[N, C]``) and the
    dot products are :func:`edge_dot`. Memory :math:`O(E + NC)`. No
    gradient.

    Shapes: ``h`` ``[N, C]``, ``edge_index`` ``[2, E]`` -> ``[E]``.
    """
    with torch.no_grad():
        h = h.to_dense() if h.layout != torch.strided else h
        hn = F.normalize(h, dim=-1, eps=eps)       # h / max(|h|, eps), as knn_candidates
        return edge_dot(hn, hn, edge_index)


_CHUNK_ROWS = 8192


def _matmul_rows_(a: Tensor, w: Tensor) -> Tensor:
    # a @ w, written over a by blocks of rows when w is square (a [N, C] tensor
    # that is not needed any more): one [N, C] allocation fewer at the peak
    # of a backward pass, for one copy of a.
    if w.size(0) != w.size(1) or not a.is_contiguous() or a.size(0) <= _CHUNK_ROWS:
        return a.matmul(w)
    for i in range(0, a.size(0), _CHUNK_ROWS):
        block = a[i:i + _CHUNK_ROWS]
        block.copy_(block.matmul(w))
    return a


class _SparseAggregate(torch.autograd.Function):
    # out = A h with A[dst, src] = w (duplicates add up).
    @staticmethod
    def forward(ctx, h: Tensor, weight: Tensor, pattern: _Pattern, chunked: bool) -> Tensor:
        n = h.size(0)
        values = weight.index_select(0, pattern.perm)
        a = _csr(pattern.crow, pattern.col, values, n)
        out = _spmm(a, h)
        # Backward needs the transposed pattern only.
        ctx.transposed, ctx.chunked = (pattern.crow_t, pattern.col_t, pattern.perm_t), chunked
        ctx.save_for_backward(h if ctx.needs_input_grad[1] else None, weight)
        return out

    @staticmethod
    @once_differentiable
    @_eager
    def backward(ctx, grad: Tensor):
        h, weight = ctx.saved_tensors
        crow_t, col_t, perm_t = ctx.transposed
        grad = grad.contiguous()
        grad_h = grad_w = None
        w_t = weight if perm_t is None else weight.index_select(0, perm_t)
        if ctx.needs_input_grad[0]:
            grad_h = _spmm(_csr(crow_t, col_t, w_t, grad.size(0)), grad)
        if ctx.needs_input_grad[1]:
            grad_w = _sddmm(grad, h, crow_t, col_t, perm_t, w_t, ctx.chunked)
        return grad_h, grad_w, None, None


class _LinearAggregate(torch.autograd.Function):
    # out = A x W^T, associated so that the sparse products run on the
    # narrower side: (A x) W^T when C_in < C_out, else A (x W^T). Keeps x
    # (which a linear layer keeps anyway), or in the first order with fixed
    # weights A x only; never the [N, C_out] product x W^T, which the SDDMM
    # recomputes.
    @staticmethod
    def forward(ctx, x: Tensor, lin_weight: Tensor, weight: Tensor, pattern: _Pattern,
                chunked: bool) -> Tensor:
        a = _csr(pattern.crow, pattern.col, weight.index_select(0, pattern.perm), x.size(0))
        ctx.pattern, ctx.chunked = pattern, chunked
        ctx.narrow_input = lin_weight.size(1) < lin_weight.size(0)
        if ctx.narrow_input:
            ax = _spmm(a, x)
            # Learned weights keep x for their SDDMM and recompute A x for the
            # linear layer's gradient (one product C_in wide) rather than keep
            # both; fixed weights keep A x only.
            learned = ctx.needs_input_grad[2]
            ctx.save_for_backward(x if learned else None, lin_weight, weight,
                                  ax if ctx.needs_input_grad[1] and not learned else None)
            return ax.matmul(lin_weight.t())
        ctx.save_for_backward(x, lin_weight, weight, None)
        return _spmm(a, x.matmul(lin_weight.t()))

    @staticmethod
    @once_differentiable
    @_eager
    def backward(ctx, grad: Tensor):
        x, lin_weight, weight, ax = ctx.saved_tensors
        pattern = ctx.pattern
        crow_t, col_t, perm_t = pattern.crow_t, pattern.col_t, pattern.perm_t
        grad = grad.contiguous()
        w_t = weight if perm_t is None else weight.index_select(0, perm_t)
        grad_x = grad_lin = grad_w = None

        def transposed_product(g: Tensor) -> Tensor:          # A^T g
            return _spmm(_csr(crow_t, col_t, w_t, g.size(0)), g)
        if ctx.narrow_input:                 # out = (A x) W^T: products C_in wide
            if ctx.needs_input_grad[1]:
                if ax is None:                                  # learned weights: recomputed
                    ax = _spmm(_csr(pattern.crow, pattern.col,
                                    weight.index_select(0, pattern.perm), x.size(0)), x)
                grad_lin = grad.t().matmul(ax)
                del ax
            if not (ctx.needs_input_grad[0] or ctx.needs_input_grad[2]):
                return None, grad_lin, None, None, None     # a first layer on a fixed graph
            g_in = grad.matmul(lin_weight)                      # dL/d(A x)
            if ctx.needs_input_grad[2]:
                grad_w = _sddmm(g_in, x, crow_t, col_t, perm_t, w_t, ctx.chunked)
            if ctx.needs_input_grad[0]:
                grad_x = transposed_product(g_in)
            return grad_x, grad_lin, grad_w, None, None
        if ctx.needs_input_grad[2]:          # out = A (x W^T): products C_out wide
            grad_w = _sddmm(grad, x.matmul(lin_weight.t()), crow_t, col_t, perm_t, w_t,
                            ctx.chunked)
        grad_h = transposed_product(grad)
        if ctx.needs_input_grad[1]:
            grad_lin = grad_h.t().matmul(x)
        if ctx.needs_input_grad[0]:
            grad_x = _matmul_rows_(grad_h, lin_weight)
        return grad_x, grad_lin, grad_w, None, None


class _EdgeListAggregate(torch.autograd.Function):
    # The edge-list form: gathers [E, C] messages (forward, and again backward).
    @staticmethod
    def forward(ctx, h: Tensor, weight: Tensor, src: Tensor, dst: Tensor,
                num_nodes: int) -> Tensor:
        ctx.save_for_backward(h, weight, src, dst)
        msg = h.index_select(0, src).mul_(weight.unsqueeze(-1))
        return h.new_zeros(num_nodes, h.size(-1)).index_add_(0, dst, msg)

    @staticmethod
    @once_differentiable
    @_eager
    def backward(ctx, grad: Tensor):
        h, weight, src, dst = ctx.saved_tensors
        grad_dst = grad.index_select(0, dst)                     # [E, C]
        grad_h = grad_w = None
        if ctx.needs_input_grad[1]:
            grad_w = h.index_select(0, src).mul_(grad_dst).sum(-1)
        if ctx.needs_input_grad[0]:
            grad_h = torch.zeros_like(h).index_add_(0, src, grad_dst.mul_(weight.unsqueeze(-1)))
        return grad_h, grad_w, None, None, None


def sparse_product_supported(h: Tensor, edge_weight: Tensor) -> bool:
    """Whether :func:`weighted_aggregate` takes the sparse-product path for
    these inputs: float32 or float64 features and weights of one dtype on
    one device (MKL has no half-precision sparse product)."""
    return (h.dtype in (torch.float32, torch.float64) and edge_weight.dtype == h.dtype
            and edge_weight.device == h.device and h.dim() == 2)


@torch.compiler.disable   # one graph break instead of many, and no recompilation per edge list
def weighted_aggregate(h: Tensor, edge_index: Tensor, edge_weight: Tensor,
                       _path: str = "auto") -> Tensor:
    r"""The weighted sum over in-coming edges,

    .. math::
        \mathbf{h}'_i = \sum_{(j, i) \in \mathcal{E}} w_{ji}\, \mathbf{h}_j,
        \qquad H' = A H, \quad A_{i,j} = w_{ji},

    equal to a ``MessagePassing`` with ``aggr="add"`` and message
    ``w * h_j`` (duplicate edges add up), without any ``[E, C]`` tensor:

    * forward: the CSR product :math:`A H` (``torch.addmm`` on a sparse CSR matrix);
    * backward: :math:`\partial L / \partial H = A^\top G` (a CSR product on
      the transposed pattern) and
      :math:`\partial L / \partial w_{ji} = \langle \mathbf{g}_i, \mathbf{h}_j \rangle`,
      a sampled dense-dense product (SDDMM) over the edges only.

    Memory :math:`O(E + NC)`. The CSR pattern of an edge list is built once
    (a stable sort by target) and shared by every call on the same
    ``edge_index`` tensor (the layers of a model); edges sorted by source
    (coalesced ones, and any boolean-mask subset of them) need no second
    sort for the transposed pattern, other orders get one. Features of
    another dtype than float32/float64, or weights of another dtype than the
    features, take the edge-list path (which gathers ``[E, C]`` messages).
    Not twice differentiable.

    Args:
        h (Tensor): node features ``[N, C]``.
        edge_index (LongTensor or IntTensor): ``[2, E]``; the edge ``(j, i)``
            sends ``h_j`` to ``i``.
        edge_weight (Tensor): ``[E]`` weights.

    Shapes:
        - **output:** ``[N, C]``
    """
    if _path == "edge_list" or not sparse_product_supported(h, edge_weight):
        return _EdgeListAggregate.apply(h, edge_weight, edge_index[0], edge_index[1], h.size(0))
    pattern = _cached_pattern(edge_index, h.size(0))
    return _SparseAggregate.apply(h.contiguous(), edge_weight, pattern, _path == "chunked")


@torch.compiler.disable
def linear_aggregate(x: Tensor, lin_weight: Tensor, edge_index: Tensor, edge_weight: Tensor,
                     _path: str = "auto") -> Tensor:
    r""":math:`A X W^\top`: a bias-free linear layer and :func:`weighted_aggregate`
    in one, with the same sparse products, associated so that they run on
    the narrower side: :math:`(A X) W^\top` when ``C_in < C_out`` (e.g. a
    first layer from 100 features to 256), else :math:`A (X W^\top)`.

    Autograd keeps one ``[N, C]`` tensor, never the ``[N, C_out]`` product
    :math:`X W^\top`: the layer's input :math:`X` (as the linear layer alone
    would), from which the SDDMM of the edge weights' gradient recomputes
    :math:`X W^\top` (one matrix product per backward pass). In the first
    order, :math:`\partial L / \partial w_{ji} = \langle (G W)_i, \mathbf{x}_j \rangle`
    needs only :math:`X`, and the linear layer's gradient :math:`G^\top (A X)`
    recomputes :math:`A X` (one product ``C_in`` wide); with fixed weights it
    keeps :math:`A X` alone.

    Args:
        x (Tensor): ``[N, C_in]`` node features.
        lin_weight (Tensor): ``[C_out, C_in]``, as ``nn.Linear.weight``.
        edge_index (LongTensor or IntTensor): ``[2, E]``.
        edge_weight (Tensor): ``[E]``.

    Shapes:
        - **output:** ``[N, C_out]``
    """
    if (_path == "edge_list" or x.layout != torch.strided   # sparse features: a sparse matmul
            or torch.is_autocast_enabled(x.device.type)     # half-precision features: edge list
            or not sparse_product_supported(x, edge_weight)
            or lin_weight.dtype != x.dtype or lin_weight.dim() != 2):
        return weighted_aggregate(sparse_linear(x, lin_weight), edge_index, edge_weight, _path)
    pattern = _cached_pattern(edge_index, x.size(0))
    return _LinearAggregate.apply(x.contiguous(), lin_weight, edge_weight, pattern,
                                  _path == "chunked")


class _Hops(torch.autograd.Function):
    # out[k] = A^k h for k = 0..K, A[dst, src] = w; one CSR matrix for all hops
    # and one SDDMM over all of them ([N, K C] wide) in the backward.
    @staticmethod
    def forward(ctx, h: Tensor, weight: Tensor, pattern: _Pattern, num_hops: int,
                chunked: bool) -> Tensor:
        n, c = h.shape
        a = _csr(pattern.crow, pattern.col, weight.index_select(0, pattern.perm), n)
        out = h.new_empty(num_hops + 1, n, c)
        out[0].copy_(h)
        on_cpu = h.device.type == "cpu"
        for k in range(1, num_hops + 1):
            if on_cpu:      # written in place, as _spmm does
                torch.addmm(out[k], a, out[k - 1], beta=0.0, out=out[k])
            else:
                out[k].copy_(_spmm(a, out[k - 1]))
        ctx.transposed, ctx.chunked = (pattern.crow_t, pattern.col_t, pattern.perm_t), chunked
        ctx.save_for_backward(out if ctx.needs_input_grad[1] else None, weight)
        return out

    @staticmethod
    @once_differentiable
    @_eager
    def backward(ctx, grad: Tensor):
        hops, weight = ctx.saved_tensors
        crow_t, col_t, perm_t = ctx.transposed
        num_hops, n, c = grad.size(0) - 1, grad.size(1), grad.size(2)
        w_t = weight if perm_t is None else weight.index_select(0, perm_t)
        a_t = _csr(crow_t, col_t, w_t, n)
        need_w = ctx.needs_input_grad[1]
        # g[:, k - 1]: the whole gradient reaching hop k, paired with hop k - 1 in the SDDMM
        g = grad.new_empty(n, num_hops, c) if need_w else None
        acc = grad[num_hops].contiguous()
        for k in range(num_hops, 0, -1):
            if g is not None:
                g[:, k - 1].copy_(acc)
            acc = _spmm(a_t, acc).add_(grad[k - 1])
        grad_w = None
        if g is not None:
            h = hops[:num_hops].transpose(0, 1).reshape(n, num_hops * c)
            grad_w = _sddmm(g.view(n, num_hops * c), h, crow_t, col_t, perm_t, w_t, ctx.chunked)
        return (acc if ctx.needs_input_grad[0] else None), grad_w, None, None, None


@torch.compiler.disable   # as weighted_aggregate: one graph break, no tracing of the pattern
def propagate_hops(h: Tensor, edge_index: Tensor, edge_weight: Tensor, num_hops: int,
                   _path: str = "auto") -> Tensor:
    r"""Every power of the weighted adjacency applied to ``h``,

    .. math::
        H_k = A^k H, \quad k = 0, \dots, K, \qquad A_{i,j} = w_{ji},

    equal to ``num_hops`` calls of :func:`weighted_aggregate` stacked, with
    the same memory (:math:`O(E + N K C)`: the hops themselves) and one
    CSR matrix for all hops; the backward runs the transposed products from
    the last hop down and computes the edge weights' gradient
    :math:`\sum_{k=1}^{K} \langle \bar{\mathbf{g}}_{k,i}, \mathbf{h}_{k-1,j} \rangle`
    (:math:`\bar G_k`: the whole gradient reaching hop :math:`k`) as one
    SDDMM over ``[N, K C]`` instead of :math:`K` narrow ones. Not twice
    differentiable.

    Args:
        h (Tensor): node features ``[N, C]``.
        edge_index (LongTensor or IntTensor): ``[2, E]``; the edge ``(j, i)``
            sends ``h_j`` to ``i``.
        edge_weight (Tensor): ``[E]`` weights.
        num_hops (int): :math:`K \ge 0`.

    Shapes:
        - **output:** ``[K + 1, N, C]`` (index 0: ``h`` itself)
    """
    if num_hops == 0:
        return h.unsqueeze(0)
    if _path == "edge_list" or not sparse_product_supported(h, edge_weight):
        hops = [h]
        for _ in range(num_hops):
            hops.append(weighted_aggregate(hops[-1], edge_index, edge_weight, _path))
        return torch.stack(hops)
    pattern = _cached_pattern(edge_index, h.size(0))
    return _Hops.apply(h.contiguous(), edge_weight, pattern, num_hops, _path == "chunked")
