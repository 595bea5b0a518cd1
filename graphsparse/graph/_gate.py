r"""The row and column gates of the candidate edges as one fused operation.

Composed from :func:`~graphsparse.core.sparse_gate` calls, autograd keeps
about nine ``[E]`` vectors per step (the softplus input, each group's
sigmoid, relu and scatter inputs, the product's factors). This function
keeps only its inputs (for the stored candidates the logits are a parameter
and the prior a buffer: no new memory; for a batch or with
``gate_self_loops=False`` they are one gathered ``[E]`` copy each) and
recomputes the rest in the backward pass, which costs one more sigmoid and
one scatter per group.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from ._validate import assert_finite


def _strength(alpha: Tensor, prior: Optional[Tensor], floor: float) -> Tuple[Tensor, Tensor]:
    z = alpha if prior is None else alpha + prior
    return z, torch.sigmoid(F.softplus(z - floor).add_(floor))


def _group(gamma: Tensor, beta: Tensor, index: Tensor,
           num_nodes: int) -> Tuple[Tensor, Tensor, Tensor]:
    total = gamma.new_zeros(num_nodes).index_add_(0, index, gamma)    # S_g
    s = torch.sigmoid(beta.to(gamma.dtype))
    r = (gamma - (s * total).index_select(0, index)).relu_()
    return r, s, total


class _GateProduct(torch.autograd.Function):
    @staticmethod
    def forward(ctx, alpha: Tensor, prior: Optional[Tensor], floor: float, num_nodes: int,
                *groups: Tensor) -> Tensor:
        z, gamma = _strength(alpha, prior, floor)
        assert_finite(z, "gate logits (alpha + logit prior, or the scorer's output)")
        out: Optional[Tensor] = None
        for beta, index in zip(groups[0::2], groups[1::2], strict=True):
            r = _group(gamma, beta, index, num_nodes)[0]
            out = r if out is None else out.mul_(r)
        assert out is not None
        ctx.floor, ctx.num_nodes = floor, num_nodes
        ctx.save_for_backward(alpha, prior, *groups)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        alpha, prior, *groups = ctx.saved_tensors
        n = ctx.num_nodes
        z, gamma = _strength(alpha, prior, ctx.floor)
        pairs = list(zip(groups[0::2], groups[1::2], strict=True))
        parts = [_group(gamma, beta, index, n) for beta, index in pairs]
        # Where the product is zero every gradient is (one factor is zero and
        # its relu passes nothing; the others are multiplied by it): drop it
        # first, so that an infinite upstream gradient there cannot become NaN.
        dead = parts[0][0] == 0
        for r, _, _ in parts[1:]:
            dead |= r == 0
        grad = grad.masked_fill(dead, 0.0)
        d_gamma = torch.zeros_like(gamma)
        grad_groups: List[Optional[Tensor]] = []
        for k, ((beta, index), (_, s, total)) in enumerate(zip(pairs, parts, strict=True)):
            # dL/dr_k = grad * (the other factors); zero where any factor is (above)
            h = grad
            for j, other in enumerate(parts):
                if j != k:
                    h = h * other[0]
            t = h.new_zeros(n).index_add_(0, index, h)       # sum over the group
            d_gamma.add_(h).sub_((s * t).index_select(0, index))
            grad_groups.append((-(total * t) * s * (1 - s)).to(beta.dtype)
                               if ctx.needs_input_grad[4 + 2 * k] else None)
            grad_groups.append(None)
        # gamma = sigmoid(floor + softplus(z - floor)); dsoftplus/dz = sigmoid(z - floor)
        d_z = d_gamma.mul_(gamma * (1 - gamma)).mul_(torch.sigmoid(z - ctx.floor))
        grad_alpha = d_z if ctx.needs_input_grad[0] else None
        grad_prior = None
        if ctx.needs_input_grad[1]:
            grad_prior = d_z.clone() if grad_alpha is not None else d_z
        return (grad_alpha, grad_prior, None, None, *grad_groups)


def gate_product(alpha: Tensor, prior: Optional[Tensor], floor: float, num_nodes: int,
                 groups: Sequence[Tuple[Tensor, Tensor]]) -> Tensor:
    r"""The product over competition groups :math:`k` (rows, columns) of the
    sigmoid sparse gate (:func:`~graphsparse.core.sparse_gate` with
    ``normalization="none"``) on softly floored logits:

    .. math::
        a_e = f + \mathrm{softplus}(\alpha_e + \pi_e - f), \quad
        \gamma_e = \sigma(a_e), \quad
        w_e = \prod_k \Big(\gamma_e - \sigma(\beta^k_{g_k(e)})
        \sum_{e' : g_k(e') = g_k(e)} \gamma_{e'}\Big)_+

    Exactly zero where any group's threshold is not passed. Autograd keeps
    the inputs only.

    Args:
        alpha (Tensor): ``[E]`` logits.
        prior (Tensor, optional): ``[E]`` additive logit prior :math:`\pi`.
        floor (float): the soft lower bound :math:`f` of the logits.
        num_nodes (int): number of groups of each kind.
        groups: ``(beta [N], index [E])`` for every competition group kind.

    Shapes:
        - **output:** ``[E]``, non-negative.
    """
    flat = [t for pair in groups for t in pair]
    return _GateProduct.apply(alpha, prior, float(floor), int(num_nodes), *flat)
