"""The p-norm penalty that drives the competition inside each group."""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from ..utils.validation import check_index, check_p
from ._groups import group_reduce


def safe_pow(a: Tensor, p: float, eps: float = 1e-12) -> Tensor:
    r""":math:`|a|^p` with a finite derivative everywhere.

    The naive ``a ** p`` has an infinite derivative at ``a = 0`` for ``p < 1``,
    and ``0 * inf`` turns the gradient of a dead component into NaN. Below
    ``eps`` the function is continued linearly, :math:`|a|\,\epsilon^{p-1}`,
    which agrees with :math:`|a|^p` at :math:`\epsilon` and bounds the slope by
    :math:`\epsilon^{p-1}`; at exactly zero the value and slope are finite.
    """
    a = a.abs()
    big = a > eps
    a_safe = torch.where(big, a, torch.ones_like(a))
    return torch.where(big, a_safe.pow(p), a * eps ** (p - 1.0))


def pnorm_penalty(a: Tensor, index: Optional[Tensor] = None, num_groups: Optional[int] = None,
                  p: float = 0.5, eps: float = 1e-12, validate: bool = True) -> Tensor:
    r"""Sum over groups of the p-norm :math:`\mathcal{R}(a_g) =
    (\sum_{i\in g} |a_i|^p)^{1/p}`, :math:`0 < p \le 1` (the paper uses 0.5).

    For :math:`p < 1` it favours few nonzero components per group; it is
    computed with :func:`safe_pow`, so its gradient is finite when components
    are exactly zero, and :math:`s^{1/p}` has a finite derivative at
    :math:`s = 0` because :math:`1/p \ge 1`.

    Args:
        a (Tensor): gate values, ``[..., n]`` (dense groups along the last
            dimension) or ``[E]`` with ``index`` (ragged groups).
        index (LongTensor, optional): ``[E]`` group of each component.
        num_groups (int, optional): number of ragged groups.
        p (float): the exponent, in ``(0, 1]``. (default: ``0.5``)
        eps (float): below it :math:`|a|^p` is continued linearly.
        validate (bool): check ``index`` (its range costs a device
            synchronization); callers whose layout was checked once pass
            ``False``. (default: ``True``)

    Returns:
        A scalar tensor.
    """
    p = check_p(p)
    if index is None:
        return group_reduce(safe_pow(a, p, eps), None, None).pow(1.0 / p).sum()
    if validate or num_groups is None:
        num_groups = check_index(index, num_groups, "index", length=a.numel())
    assert num_groups is not None
    return ragged_pnorm_penalty(a, (index,), num_groups, p, eps)


def ragged_pnorm_penalty(a: Tensor, indices: Sequence[Tensor], num_groups: int,
                         p: float = 0.5, eps: float = 1e-12) -> Tensor:
    r""":func:`pnorm_penalty` summed over several groupings of the same
    components, :math:`\sum_k \sum_g (\sum_{i: g_k(i) = g} |a_i|^p)^{1/p}`
    (e.g. the rows and the columns of an adjacency), without input checks:
    :math:`|a|^p` and its slope are computed once for all groupings, and
    autograd keeps only ``a`` and the ``[G]`` sums.

    Args:
        a (Tensor): ``[E]`` components.
        indices: ``[E]`` group index of each component, one per grouping.
        num_groups (int): number of groups of every grouping.
        p (float): the exponent, in ``(0, 1]``.
        eps (float): below it :math:`|a|^p` is continued linearly.

    Returns:
        A scalar tensor.
    """
    return _RaggedPNorm.apply(a, int(num_groups), float(p), float(eps), *indices)


def _pow(m: Tensor, p: float) -> Tensor:
    return m.sqrt() if p == 0.5 else m.pow(p)      # sqrt: the paper's p, and faster


@torch.no_grad()
def _safe_pow_(a: Tensor, p: float, eps: float) -> Tensor:
    # safe_pow without autograd, in three passes: |a|^p is finite at 0
    m = a.abs()
    out = _pow(m, p)
    return torch.where(m > eps, out, m.mul_(eps ** (p - 1.0)), out=out)


def _pow_slope(a: Tensor, p: float, eps: float) -> Tensor:
    """The derivative of :func:`safe_pow` (0 at exactly 0, as autograd's abs)."""
    m = a.abs()
    # p m^(p-1) above eps (inf at 0, never selected), eps^(p-1) below
    slope = m.rsqrt().mul_(0.5) if p == 0.5 else m.pow(p - 1.0).mul_(p)
    torch.where(m > eps, slope, torch.full((), eps ** (p - 1.0), dtype=m.dtype,
                                          device=m.device), out=slope)
    return slope.mul_(torch.sign(a))


class _RaggedPNorm(torch.autograd.Function):
    # sum_k sum_g (sum_{i: g_k(i) = g} |a_i|^p)^(1/p), keeping only a and the
    # [G] sums for backward (autograd through safe_pow keeps about four [E]
    # vectors per grouping).
    @staticmethod
    def forward(ctx, a: Tensor, num_groups: int, p: float, eps: float,
                *indices: Tensor) -> Tensor:
        pw = _safe_pow_(a, p, eps)
        sums = [a.new_zeros(num_groups).index_add_(0, index, pw) for index in indices]
        ctx.p, ctx.eps = p, eps
        ctx.save_for_backward(a, *indices, *sums)
        total = sums[0].pow(1.0 / p).sum()
        for s in sums[1:]:
            total = total + s.pow(1.0 / p).sum()
        return total

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        a, *rest = ctx.saved_tensors
        k = len(rest) // 2
        indices, sums = rest[:k], rest[k:]
        p = ctx.p
        # d/d|a_i| of its groups: sum_k (1/p) s_k^(1/p - 1), finite as 1/p >= 1
        d: Optional[Tensor] = None
        for index, s in zip(indices, sums, strict=True):
            d_s = (grad * (1.0 / p) * s.pow(1.0 / p - 1.0)).index_select(0, index)
            d = d_s if d is None else d.add_(d_s)
        assert d is not None
        return (d.mul_(_pow_slope(a, p, ctx.eps)), None, None, None) + (None,) * k
