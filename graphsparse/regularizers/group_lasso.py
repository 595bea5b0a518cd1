r"""Baselines of the SGL0 paper: group lasso (Eq. 2), sparse group lasso
(Eq. 3) and plain :math:`\ell_1`, all in the :class:`StructuredRegularizer`
interface (trained by (sub)gradients through any optimizer)."""
from __future__ import annotations

import math
from typing import Iterable, Optional

from torch import Tensor, nn

from ..utils.validation import check_nonnegative
from .base import StructuredRegularizer


def _total(terms: Iterable[Tensor]) -> Tensor:
    """The sum of per-layer terms (a regularizer covers at least one layer)."""
    total = sum(terms)
    assert isinstance(total, Tensor)
    return total


def group_lasso_penalty(matrix: Tensor) -> Tensor:
    r"""Group lasso of a ``[G, S]`` group matrix, paper Eq. (2):

    .. math::
        \mathcal{R}_{GL}(W_l) = \sum_{g=1}^{G} \sqrt{S}\, \|w_{l,g}\|_2
    """
    return math.sqrt(matrix.shape[1]) * matrix.norm(dim=1).sum()


def l1_penalty(matrix: Tensor) -> Tensor:
    r""":math:`\|W_l\|_1`, the sum of absolute values."""
    return matrix.abs().sum()


class GroupLasso(StructuredRegularizer):
    r"""Group lasso: ``penalty() = lam / N * sum_l R_GL(W_l)``.

    Args: see :class:`StructuredRegularizer`.
    """

    def penalty(self) -> Tensor:
        return (self.lam / self.num_samples) * _total(
            group_lasso_penalty(layer.matrix()) for layer in self.layers)


class L1(StructuredRegularizer):
    r"""Plain lasso: ``penalty() = lam / N * sum_l ||W_l||_1``."""

    def penalty(self) -> Tensor:
        return (self.lam / self.num_samples) * _total(
            l1_penalty(layer.matrix()) for layer in self.layers)


class SparseGroupLasso(StructuredRegularizer):
    r"""Sparse group lasso, paper Eq. (3):
    ``penalty() = lam / N * sum_l R_GL(W_l) + lam_l1 / N * sum_l ||W_l||_1``.

    Args:
        lam_l1 (float, optional): strength of the :math:`\ell_1` term per
            sample; the paper uses ``lam``. (default: ``None``, i.e. ``lam``)
        others: see :class:`StructuredRegularizer`.
    """

    def __init__(self, model: nn.Module, lam: float, num_samples: int = 1,
                 lam_l1: Optional[float] = None, linear_groups: str = "out",
                 norms: bool = False, modules: Optional[Iterable[nn.Module]] = None):
        super().__init__(model, lam, num_samples, linear_groups, norms, modules)
        self.lam_l1 = self.lam if lam_l1 is None else check_nonnegative(
            lam_l1, "lam_l1", self.__class__.__name__)

    def penalty(self) -> Tensor:
        n = self.num_samples
        return _total((self.lam / n) * group_lasso_penalty(m) + (self.lam_l1 / n) * l1_penalty(m)
                      for m in (layer.matrix() for layer in self.layers))

    def extra_repr(self) -> str:
        return super().extra_repr() + f", lam_l1={self.lam_l1:g}"
