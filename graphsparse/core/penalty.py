"""The p-norm penalty that drives the competition inside each group."""
from __future__ import annotations

from typing import Optional

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
    return _RaggedPNorm.apply(a, index, num_groups, float(p), float(eps))


def _pow_slope(a: Tensor, p: float, eps: float) -> Tensor:
    """The derivative of :func:`safe_pow` (0 at exactly 0, as autograd's abs)."""
    mag = a.abs()
    big = mag > eps
    slope = torch.where(big, p * torch.where(big, mag, torch.ones_like(mag)).pow(p - 1.0),
                        torch.full_like(mag, eps ** (p - 1.0)))
    return slope.mul_(torch.sign(a))


class _RaggedPNorm(torch.autograd.Function):
    # sum_g (sum_{i in g} |a_i|^p)^(1/p), keeping only a and the [G] sums for
    # backward (autograd through safe_pow keeps about four [E] vectors).
    @staticmethod
    def forward(ctx, a: Tensor, index: Tensor, num_groups: int, p: float,
                eps: float) -> Tensor:
        s = a.new_zeros(num_groups).index_add_(0, index, safe_pow(a, p, eps))
        ctx.p, ctx.eps = p, eps
        ctx.save_for_backward(a, index, s)
        return s.pow(1.0 / p).sum()

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        a, index, s = ctx.saved_tensors
        p = ctx.p
        d_s = grad * (1.0 / p) * s.pow(1.0 / p - 1.0)         # finite: 1/p >= 1
        return _pow_slope(a, p, ctx.eps).mul_(d_s.index_select(0, index)), None, None, None, None
