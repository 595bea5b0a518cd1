"""Two edge operations with hand-written backward passes that save O(N)
tensors instead of O(E) (or O(E x C)) ones; the math is the one autograd
would derive, only the gathers are recomputed in the backward pass."""
from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable


class _ScaleEdges(torch.autograd.Function):
    # out[e] = a[e] * s[index[e]]
    @staticmethod
    def forward(ctx, a: Tensor, s: Tensor, index: Tensor) -> Tensor:
        ctx.save_for_backward(a, s, index)
        return a * s.index_select(0, index)

    @staticmethod
    def backward(ctx, grad: Tensor):
        a, s, index = ctx.saved_tensors
        # Exact zeros are structural (they stay zero and forward() drops them):
        # their gradient, which can overflow where s is huge, is not propagated.
        grad = grad.masked_fill(a == 0, 0.0)
        grad_a = grad_s = None
        if ctx.needs_input_grad[0]:
            grad_a = grad * s.index_select(0, index)
        if ctx.needs_input_grad[1]:
            grad_s = torch.zeros_like(s).index_add_(0, index, grad * a)
        return grad_a, grad_s, None


def scale_edges(a: Tensor, s: Tensor, index: Tensor) -> Tensor:
    """``a * s[index]``: every edge scaled by a per-node factor. Autograd
    saves ``a`` and ``s`` (``E + N`` values) instead of ``a`` and the
    gathered ``s[index]`` (``2E``). The gradient of the outputs that are
    exactly zero is dropped: it would only flow back to the zero itself (its
    scaled value stays zero), and ``s`` can be large enough there to turn it
    into inf and then NaN."""
    return _ScaleEdges.apply(a, s, index)


class _WeightedAggregate(torch.autograd.Function):
    # out[i] = sum_{e: dst[e] = i} w[e] * h[src[e]]
    @staticmethod
    def forward(ctx, h: Tensor, weight: Tensor, src: Tensor, dst: Tensor,
                num_nodes: int) -> Tensor:
        ctx.save_for_backward(h, weight, src, dst)
        msg = h.index_select(0, src).mul_(weight.unsqueeze(-1))
        return h.new_zeros(num_nodes, h.size(-1)).index_add_(0, dst, msg)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        h, weight, src, dst = ctx.saved_tensors
        grad_dst = grad.index_select(0, dst)                     # [E, C]
        grad_h = grad_w = None
        if ctx.needs_input_grad[1]:
            grad_w = h.index_select(0, src).mul_(grad_dst).sum(-1)
        if ctx.needs_input_grad[0]:
            grad_h = torch.zeros_like(h).index_add_(0, src, grad_dst.mul_(weight.unsqueeze(-1)))
        return grad_h, grad_w, None, None, None


def weighted_aggregate(h: Tensor, edge_index: Tensor, edge_weight: Tensor) -> Tensor:
    r""":math:`\mathbf{h}'_i = \sum_{(j, i)} w_{ji} \mathbf{h}_j` for ``h`` of
    shape ``[N, C]``. Equal to a ``MessagePassing`` with ``aggr="add"`` and
    message ``w * h_j``, but the backward pass recomputes the gathered
    messages instead of keeping the ``[E, C]`` tensor ``h_j`` alive (autograd
    keeps it when ``edge_weight`` requires a gradient). Not twice
    differentiable."""
    return _WeightedAggregate.apply(h, edge_weight, edge_index[0], edge_index[1], h.size(0))
