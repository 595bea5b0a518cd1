r"""Sparse group :math:`\ell_0`-lasso (SGL0), Bui et al., "l0 Regularized
Structured Sparsity Convolutional Neural Networks", 2019
(https://arxiv.org/abs/1912.07868), Algorithm 1."""
from __future__ import annotations

import math
from typing import Any, Dict, Iterable, List, Optional, Union

import torch
from torch import Tensor, nn

from ..utils.validation import check_choice, check_nonnegative, check_positive_int
from .base import StructuredRegularizer
from .group_lasso import group_lasso_penalty
from .metrics import ZERO_TOL


def hard_threshold(x: Tensor, threshold: float) -> Tensor:
    r"""Element-wise hard thresholding, paper Eq. (11):
    :math:`\mathcal{H}_t(x) = 0` if :math:`|x| \le t`, else :math:`x`."""
    return torch.where(x.abs() > threshold, x, torch.zeros_like(x))


class SGL0(StructuredRegularizer):
    r"""Sparse group :math:`\ell_0`-lasso by variable splitting (Algorithm 1).

    Each covered weight ``W`` gets an auxiliary copy ``V`` and the objective is
    the paper's Eq. (8), with ``lam`` and ``beta`` given per training sample
    (divided by ``N``):

    .. math::
        \tilde{\mathcal{L}}(W) + \frac{1}{N} \sum_l \Big[\lambda\,
        \big(\mathcal{R}_{GL}(W_l) + \|V_l\|_0\big) + \frac{\beta}{2}
        \|W_l - V_l\|_2^2\Big]

    * :meth:`penalty` returns the part that depends on ``W`` (group lasso plus
      coupling; :meth:`l0` gives the constant :math:`\ell_0` term);
      back-propagating it and stepping any optimizer is Eq. (10a).
    * :meth:`step`, after each optimizer step, sets
      :math:`V = \mathcal{H}_{\sqrt{2\lambda/\beta}}(W)` (Eq. 10b).
    * :meth:`epoch_end` multiplies ``beta`` by ``beta_growth`` every
      ``grow_every`` epochs (Algorithm 1, line 12).
    * :meth:`finalize` writes exact zeros into ``W`` once training is over.
      ``mode="v"`` (default) sets ``W := V``: ``V`` holds the exact zeros that
      the hard threshold made, and Theorem 2 says ``W - V -> 0`` as ``beta``
      grows; the model is then evaluated with these sparse weights.
      ``mode="threshold"`` keeps ``W`` and only applies the paper's
      :math:`10^{-5}` thresholds (:func:`prune_small_`, also applied after
      ``"v"``), which is how the paper reports its results.

    Choosing ``beta``: the threshold :math:`\sqrt{2\lambda/\beta}` does not
    depend on ``N``. With the paper's ratio ``beta = 25 lam`` it is 0.28, above
    nearly every weight of LeNet-5 or a ResNet, so ``V`` is almost all zero, the
    coupling acts as a weight decay of ``beta / N`` towards zero, and only
    ``mode="threshold"`` gives a usable model. ``W := V`` pays off when ``beta``
    has grown enough (large ``beta_growth`` or long training) that the
    threshold is at the scale of the weights to drop (about 0.01 - 0.03).

    Args:
        model (torch.nn.Module): the network.
        lam (float): :math:`\lambda` per sample; the paper uses ``0.1`` for
            LeNet-5-Caffe on MNIST (i.e. ``0.1 / 60000``).
        beta (float): initial :math:`\beta` per sample (paper: ``2.5``), > 0.
        beta_growth (float, optional): :math:`\sigma \ge 1`. (default: ``1.25``)
        grow_every (int, optional): epochs between growths. (default: ``40``)
        num_samples (int, optional): training set size ``N``. (default: ``1``)
        linear_groups, norms, modules: see :class:`StructuredRegularizer`.
    """

    def __init__(self, model: nn.Module, lam: float, beta: float, beta_growth: float = 1.25,
                 grow_every: int = 40, num_samples: int = 1, linear_groups: str = "out",
                 norms: bool = False, modules: Optional[Iterable[nn.Module]] = None):
        owner = self.__class__.__name__
        self.beta = check_nonnegative(beta, "beta", owner, strict=True)
        growth = check_nonnegative(beta_growth, "beta_growth", owner)
        if growth < 1:
            raise ValueError(f"'{owner}' expects 'beta_growth' >= 1 so that beta never "
                             f"shrinks (got {beta_growth!r})")
        self.beta_growth = growth
        self.grow_every = check_positive_int(grow_every, "grow_every", owner)
        super().__init__(model, lam, num_samples, linear_groups, norms, modules)
        self.V: List[Tensor] = []
        self.step()

    @property
    def threshold(self) -> float:
        r""":math:`\sqrt{2\lambda/\beta}`; ``N`` cancels."""
        return math.sqrt(2.0 * self.lam / self.beta)

    def penalty(self) -> Tensor:
        if self.V and self.V[0].device != self.layers[0].module.weight.device:
            self.step()  # the model was moved after the regularizer was built
        n = self.num_samples
        out: Union[Tensor, float] = 0.0
        for layer, vs in zip(self.layers, self._v_by_layer(), strict=True):
            out = out + (self.lam / n) * group_lasso_penalty(layer.matrix())
            out = out + (0.5 * self.beta / n) * sum(
                (w - v).pow(2).sum() for w, v in zip(layer.params, vs, strict=True))
        assert isinstance(out, Tensor)          # a regularizer covers at least one layer
        return out

    def l0(self) -> float:
        r""":math:`\frac{\lambda}{N}\sum_l \|V_l\|_0`, constant in ``W``."""
        return self.lam / self.num_samples * sum(int(v.count_nonzero()) for v in self.V)

    @torch.no_grad()
    def step(self) -> None:
        t = self.threshold
        self.V = [hard_threshold(p.detach(), t) for p in self.params]

    def epoch_end(self) -> None:
        super().epoch_end()
        if self.epoch % self.grow_every == 0:
            self.beta *= self.beta_growth
            self.step()

    @torch.no_grad()
    def distance(self) -> float:
        r""":math:`\|W - V\|_2` over all covered weights."""
        return math.sqrt(sum(float((p - v).pow(2).sum())
                             for p, v in zip(self.params, self.V, strict=True)))

    @torch.no_grad()
    def finalize(self, tol: float = ZERO_TOL, *, mode: str = "v") -> None:
        """Writes exact zeros into the weights, after training.

        Args:
            tol (float, optional): the paper's zero threshold. (default: ``1e-5``)
            mode (str, optional): keyword only. ``"v"`` sets ``W := V`` (the
                hard-thresholded copy), then applies the paper's :math:`10^{-5}`
                thresholds; ``"threshold"`` applies only those thresholds to
                ``W``, as the paper reports its results. (default: ``"v"``)
        """
        check_choice(mode, ("v", "threshold"), "mode", f"{self.__class__.__name__}.finalize")
        if mode == "v":
            for p, v in zip(self.params, self.V, strict=True):
                p.copy_(v)
        super().finalize(tol)
        self.step()

    def _v_by_layer(self):
        i = 0
        for layer in self.layers:
            k = len(layer.params)
            yield self.V[i:i + k]
            i += k

    def state_dict(self) -> Dict[str, Any]:
        return {**super().state_dict(), "beta": self.beta, "V": [v.clone() for v in self.V]}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.beta = state["beta"]
        self.V = [v.to(p.device) for v, p in zip(state["V"], self.params, strict=True)]

    def extra_repr(self) -> str:
        return (super().extra_repr() + f", beta={self.beta:g}, beta_growth={self.beta_growth:g}, "
                f"grow_every={self.grow_every}")
