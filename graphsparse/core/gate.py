"""The differentiable sparse gate of *Differentiable Sparsification for Deep
Neural Networks* (Y. Lee), Eqs. (2)-(4), with the null component."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..utils.validation import check_choice, check_finite, check_index, check_positive_int
from ._groups import group_expand, group_reduce, group_sizes

NORMALIZATIONS = ("sum", "null", "none")
ACTIVATIONS = ("sigmoid", "exp")


def _check_layout(alpha: Tensor, beta: Tensor, index: Optional[Tensor],
                  num_groups: Optional[int]) -> Optional[int]:
    if not isinstance(alpha, Tensor) or not alpha.is_floating_point():
        raise ValueError("'alpha' must be a floating-point tensor")
    if not isinstance(beta, Tensor) or not beta.is_floating_point():
        raise ValueError("'beta' must be a floating-point tensor")
    if index is None:
        if alpha.dim() < 1:
            raise ValueError("'alpha' must have at least one dimension [..., n] for dense groups")
        if beta.shape != alpha.shape[:-1] and beta.numel() != 1:
            raise ValueError(
                f"'beta' must have one entry per group, shape {tuple(alpha.shape[:-1])} "
                f"for 'alpha' of shape {tuple(alpha.shape)} (got {tuple(beta.shape)})")
        return None
    if alpha.dim() != 1:
        raise ValueError(
            f"'alpha' must be one-dimensional [E] for ragged groups (got {tuple(alpha.shape)})")
    num_groups = check_index(index, num_groups, "index", length=alpha.numel())
    if beta.dim() != 1 or beta.numel() != num_groups:
        raise ValueError(
            f"'beta' must have one entry per group ([{num_groups}]) (got {tuple(beta.shape)})")
    return num_groups


def sparse_gate(
    alpha: Tensor,
    beta: Tensor,
    index: Optional[Tensor] = None,
    num_groups: Optional[int] = None,
    normalization: str = "sum",
    activation: str = "sigmoid",
    validate: bool = True,
) -> Tensor:
    r"""The differentiable sparse gate.

    For every group :math:`g` with components :math:`i \in g`:

    .. math::
        \gamma_i = \sigma(\alpha_i), \qquad
        t_g = \sigma(\beta_g) \sum_{j \in g} \gamma_j, \qquad
        \tilde\gamma_i = (\gamma_i - t_g)_+

    followed by one of the normalizations

    * ``"sum"`` (Eq. 4): :math:`a_i = \tilde\gamma_i / \sum_{j\in g}\tilde\gamma_j`,
      the nonzero outputs of a group sum to one;
    * ``"null"``: :math:`a_i = \tilde\gamma_i / (\sum_{j\in g}\tilde\gamma_j +
      \tilde\gamma_{\emptyset})` with the null strength
      :math:`\tilde\gamma_{\emptyset} = \sum_{j\in g}\min(\gamma_j, t_g)`; the
      outputs sum to one minus the null share;
    * ``"none"``: :math:`a_i = \tilde\gamma_i`, for callers that normalize
      differently (e.g. Sinkhorn).

    Components below the threshold are **exactly zero**. When every component of
    a group is below it, the group's outputs are all zero (the module is
    nullified) and no NaN appears in the forward or backward pass.

    With ``activation="exp"``, :math:`\gamma_i = \exp(\alpha_i)`; for the
    ``"sum"`` and ``"null"`` normalizations the result is invariant to a shift of
    :math:`\alpha` within a group, so the detached per-group maximum is
    subtracted first (as in a numerically careful softmax).

    Args:
        alpha (Tensor): logits, ``[..., n]`` (dense groups: the last dimension is
            a group) or ``[E]`` (ragged groups, with ``index``).
        beta (Tensor): one threshold logit per group: ``[...]`` (dense) or
            ``[G]`` (ragged).
        index (LongTensor, optional): ``[E]``, the group of each component, in
            ``[0, G)``. ``None`` for dense groups. (default: ``None``)
        num_groups (int, optional): ``G``; inferred as ``index.max() + 1``.
        normalization (str): ``"sum"``, ``"null"`` or ``"none"``.
            (default: ``"sum"``)
        activation (str): ``"sigmoid"`` or ``"exp"``. (default: ``"sigmoid"``)
        validate (bool): check shapes, index range and finiteness (costs a
            device synchronization). (default: ``True``)

    Shapes:
        - **output:** same shape as ``alpha``, non-negative.
    """
    check_choice(normalization, NORMALIZATIONS, "normalization", "sparse_gate")
    check_choice(activation, ACTIVATIONS, "activation", "sparse_gate")
    if validate:
        num_groups = _check_layout(alpha, beta, index, num_groups)
        check_finite(alpha, "alpha")
        check_finite(beta, "beta")
    elif index is not None and num_groups is None:
        num_groups = int(index.max()) + 1 if index.numel() > 0 else 0

    if activation == "sigmoid":
        gamma = torch.sigmoid(alpha)
    else:
        if normalization != "none":
            shift = group_reduce(alpha.detach(), index, num_groups, reduce="amax")
            alpha = alpha - group_expand(shift, index)
        gamma = torch.exp(alpha)

    s = torch.sigmoid(beta)
    if index is None:  # one beta per group ([...]) or one shared beta
        s = s.reshape(()) if beta.numel() == 1 else s.unsqueeze(-1)
    threshold = s * group_reduce(gamma, index, num_groups)          # [..., 1] or [G]
    threshold = group_expand(threshold, index)
    tilde = F.relu(gamma - threshold)
    if normalization == "none":
        return tilde

    denom = group_reduce(tilde, index, num_groups)
    if normalization == "null":
        denom = denom + group_reduce(torch.minimum(gamma, threshold), index, num_groups)
    # A dead group has denom == 0 and tilde == 0: divide by one instead, so that
    # neither the output nor its gradient is NaN.
    denom = torch.where(denom > 0, denom, torch.ones_like(denom))
    return tilde / group_expand(denom, index)


def init_beta(group_size: Tensor) -> Tensor:
    r"""The paper's initial threshold logit :math:`\beta_g = -\log(n_g^2 + n_g - 1)`.

    With :math:`\alpha = 0` it gives every component and the null component
    the same initial strength :math:`n/(2(n+1))`. For a single-component group
    (:math:`n_g = 1`) it is :math:`\beta = 0`; groups of size 0 get 0 too.
    """
    n = group_size.to(torch.get_default_dtype())
    return -torch.log((n * n + n - 1).clamp_min(1.0))


class SparseGate(nn.Module):
    r"""A set of differentiable sparse gates with learnable :math:`\alpha` and
    :math:`\beta` (see :func:`sparse_gate` for the math).

    Two layouts:

    * ``SparseGate(n, num_groups=G)``: G dense groups of ``n`` components each
      (the blocks of a ResNet stage, the branches of a ResNeXt block); the
      output has shape ``[G, n]``.
    * ``SparseGate(index=index, num_groups=G)``: ragged groups, component ``e``
      in group ``index[e]`` (edges grouped by row or column of an adjacency);
      the output has shape ``[E]``.

    Initialization follows the paper: :math:`\alpha = 0` and
    :math:`\beta_g = -\log(n_g^2 + n_g - 1)`, so that every component and the
    null component start with equal share.

    .. note::
        A group of a single component cannot be zeroed by the threshold (the
        threshold is a fraction :math:`\sigma(\beta) < 1` of its own strength).
        With ``normalization="sum"`` its output is constantly 1 and it receives
        no gradient; with ``"null"`` its output is
        :math:`1 - \sigma(\beta)`, a learnable scale in :math:`(0, 1)`.

    Args:
        num_components (int, optional): components per group (dense layout).
        num_groups (int, optional): number of groups ``G``. (default: ``1`` for
            dense groups, ``index.max() + 1`` for ragged ones)
        index (LongTensor, optional): ``[E]`` group of each component (ragged).
        normalization (str): ``"sum"``, ``"null"`` or ``"none"``.
        activation (str): ``"sigmoid"`` or ``"exp"``.

    Shapes:
        - **output:** ``[G, n]`` (dense) or ``[E]`` (ragged).
    """

    # Buffers, declared for the type checker (nn.Module.__getattr__ is typed
    # ``Tensor | Module``).
    index: Optional[Tensor]
    group_size: Tensor

    def __init__(self, num_components: Optional[int] = None, num_groups: Optional[int] = None,
                 *, index: Optional[Tensor] = None, normalization: str = "sum",
                 activation: str = "sigmoid") -> None:
        super().__init__()
        name = self.__class__.__name__
        check_choice(normalization, NORMALIZATIONS, "normalization", name)
        check_choice(activation, ACTIVATIONS, "activation", name)
        if (num_components is None) == (index is None):
            raise ValueError(
                f"'{name}' needs exactly one of 'num_components' (dense groups) "
                f"or 'index' (ragged groups)")
        self.normalization = normalization
        self.activation = activation
        self.validate = True
        if index is None:
            self.num_components: Optional[int] = check_positive_int(
                num_components, "num_components", name)
            self.num_groups = check_positive_int(1 if num_groups is None else num_groups,
                                                 "num_groups", name)
            self.register_buffer("index", None)
            sizes = torch.full((self.num_groups,), self.num_components)
            self.alpha = nn.Parameter(torch.empty(self.num_groups, self.num_components))
        else:
            self.num_groups = check_index(index, num_groups, "index")
            self.num_components = None
            self.register_buffer("index", index.long().clone())
            sizes = group_sizes(index.long(), self.num_groups)
            self.alpha = nn.Parameter(torch.empty(index.numel()))
        self.register_buffer("group_size", sizes, persistent=False)
        self.beta = nn.Parameter(torch.empty(self.num_groups))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.alpha.zero_()
            self.beta.copy_(init_beta(self.group_size))

    def forward(self) -> Tensor:
        return sparse_gate(self.alpha, self.beta, self.index, self.num_groups,
                           self.normalization, self.activation, validate=self.validate)

    def penalty(self, p: float = 0.5) -> Tensor:
        """Sum over groups of the p-norm penalty of the gate values."""
        from .penalty import pnorm_penalty
        return pnorm_penalty(self(), self.index, self.num_groups, p=p, validate=False)

    @torch.no_grad()
    def mask(self) -> Tensor:
        """Boolean tensor of the components that are alive (gate > 0)."""
        return self() > 0

    @torch.no_grad()
    def num_alive(self) -> Tensor:
        """Number of surviving components in each group, ``[G]``."""
        alive = self.mask().to(self.alpha.dtype)
        return group_reduce(alive, self.index, self.num_groups).reshape(-1).round().long()

    def extra_repr(self) -> str:
        layout = (f"num_components={self.num_components}" if self.index is None
                  else f"ragged, num_components={self.index.numel()}")
        return (f"{layout}, num_groups={self.num_groups}, "
                f"normalization={self.normalization!r}, activation={self.activation!r}")
