"""What the three gated CNNs share: one :class:`~graphsparse.core.SparseGate`
for the whole network (one gate forward per step), a penalty weight per stage,
and small building blocks (the parameter-free shortcut, a shortcut-only block)."""
from __future__ import annotations

from typing import Iterator, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core import SparseGate, group_expand, group_reduce, pnorm_penalty
from ..utils.validation import check_p

Lambdas = Union[float, Sequence[float]]


class GatedNetwork(nn.Module):
    r"""Base class of :class:`ResNet`, :class:`ResNeXt` and :class:`DenseNet`.

    A subclass builds its layers and calls :meth:`_init_gating` with one
    :class:`SparseGate` holding every competition group of the network (or
    ``None`` for the plain variant) and the stage of each group. The objective
    is

    .. math::
        \mathcal{L}(D, W, A) + \sum_{s} \lambda_s \sum_{g \in s} \mathcal{R}(a^g),

    and :meth:`penalty` returns the second term in one call. Because the
    p-norm is positively homogeneous, :math:`\lambda_s \mathcal{R}(a) =
    \mathcal{R}(\lambda_s a)`, so the weighted sum is one group reduction.

    The gate values computed by ``forward`` in training mode are reused by the
    next :meth:`penalty` call (one gate forward per step); they are recomputed
    when the gate's parameters changed in between.

    **Host reads.** Skipping a dead component is a Python decision, so it needs
    the gate's zeros on the host. They are read, together with a check that
    :math:`\alpha`, :math:`\beta` and the gate values are finite, by
    :meth:`refresh_gate_state` (one device-to-host copy), never implicitly on
    every step:

    * in evaluation mode (or without autograd) the read happens only when the
      gate parameters changed since the last one, so the cached mask is exact;
    * in training mode the cached mask is reused for up to
      :attr:`mask_refresh_steps` forward passes;
      :func:`~graphsparse.cnn.train.fit` also refreshes it at the start of every
      epoch. A component that died since the last read is still computed, with
      its exact zero gate (same output, and zero gradient to its weights); one
      that came back to life since stays skipped until the next read.

    A non-finite gate raises a ``ValueError`` naming the tensor at every read;
    it is never taken for a dead component.
    """

    gate: Optional[SparseGate]
    group_stage: Tensor           # buffers, declared for the type checker
    _group_lambda: Tensor
    #: whether ``forward`` skips components whose gate is zero (their weights
    #: then get no gradient, which data parallelism must be told about)
    skips_dead_components: bool = False
    #: what a competition group and a component are, for plots and reports
    group_label: str = "group"
    component_label: str = "component"
    #: training-mode forward passes between two host reads of the gate's zeros
    mask_refresh_steps: int = 100

    def _init_gating(self, gate: Optional[SparseGate], group_stage: Sequence[int],
                     num_stages: int, lambdas: Lambdas) -> None:
        self.gate = gate
        self.num_stages = num_stages
        if gate is not None:
            gate.validate = False  # the layout is correct by construction; no sync per step
        self.register_buffer("group_stage", torch.as_tensor(group_stage, dtype=torch.long),
                             persistent=False)
        self.register_buffer("_group_lambda", torch.zeros(len(group_stage)), persistent=False)
        self._stash: Optional[Tuple[Tensor, tuple]] = None   # (gate values, their version)
        self._alive: Optional[List[bool]] = None   # host copy of gate > 0, flattened
        self._alive_version: Optional[tuple] = None
        self._forwards_since_read = 0
        self.set_lambdas(lambdas)

    def reset_parameters(self) -> None:
        """He (fan-out) initialization of convolutions, unit batch norms,
        PyTorch's default for linear layers and the paper's gate initialization."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
                m.reset_running_stats()
            elif isinstance(m, (nn.Linear, SparseGate)):
                m.reset_parameters()

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()   # the stash is part of an autograd graph:
        state["_stash"] = None         # not copied (deepcopy, pickling)
        state["_alive_version"] = None   # parameter ids change in a copy
        return state

    def structure(self) -> dict:
        """The learned structure, for reports (each network defines it)."""
        raise NotImplementedError

    @property
    def gated(self) -> bool:
        return self.gate is not None

    def set_lambdas(self, lambdas: Lambdas) -> None:
        """Sets the penalty weight of every stage (one float, or one per stage)."""
        name = self.__class__.__name__
        if isinstance(lambdas, (int, float)):
            lambdas = [float(lambdas)] * self.num_stages
        lambdas = [float(v) for v in lambdas]
        if len(lambdas) == 1:
            lambdas = lambdas * self.num_stages
        if len(lambdas) != self.num_stages or any(v < 0 for v in lambdas):
            raise ValueError(f"'{name}' expects 'lambdas' to be one non-negative float or "
                             f"{self.num_stages} of them, one per stage (got {lambdas})")
        self.lambdas = tuple(lambdas)
        lam = torch.tensor(lambdas, dtype=self._group_lambda.dtype,
                           device=self._group_lambda.device)
        self._group_lambda.copy_(lam[self.group_stage.to(lam.device)])

    def gate_values(self) -> Optional[Tensor]:
        """The gate forward of this step: ``[G, n]`` (dense) or ``[E]`` (ragged).

        Also keeps the host copy of the alive mask (:attr:`alive`) up to date
        under the policy of the class docstring: no host read in a training
        step unless :attr:`mask_refresh_steps` forwards have passed."""
        if self.gate is None:
            return None
        a = self.gate()
        training = self.training and torch.is_grad_enabled()
        version = self._gate_version()
        if training:
            self._stash = (a, version)
        if self._alive_version != version:
            stale_ok = (training and self._alive is not None
                        and self._forwards_since_read < self.mask_refresh_steps)
            if not stale_ok:
                self._read_gate_state(a.detach(), version)
        if training:
            self._forwards_since_read += 1
        return a

    @property
    def alive(self) -> Optional[List[bool]]:
        """The cached host copy of ``gate > 0`` (flattened), or ``None``."""
        return self._alive

    def _require_gate(self) -> SparseGate:
        if self.gate is None:
            raise ValueError(f"'{self.__class__.__name__}' is the plain variant: it has no gate")
        return self.gate

    def _gate_version(self) -> tuple:
        return tuple((id(p), p._version) for p in self._require_gate().parameters())

    @torch.no_grad()
    def refresh_gate_state(self) -> None:
        """Reads the gate's zeros into the host cache now (one device-to-host
        copy), after checking that the gate inputs and values are finite.

        Raises:
            ValueError: if ``gate.alpha``, ``gate.beta`` or the gate values
                contain NaN or infinity (a NaN gate is never read as a dead
                component)."""
        if self.gate is not None:
            self._read_gate_state(self.gate().detach(), self._gate_version())

    def _read_gate_state(self, a: Tensor, version: tuple) -> None:
        g = self._require_gate()
        flags = torch.stack([g.alpha.detach().isfinite().all(), g.beta.detach().isfinite().all(),
                             a.isfinite().all()])
        host = torch.cat([flags, (a > 0).flatten()]).tolist()    # the one host read
        self._raise_if_not_finite(host[:3])
        self._alive = [bool(v) for v in host[3:]]
        self._alive_version = version
        self._forwards_since_read = 0

    def _raise_if_not_finite(self, flags: Sequence[bool]) -> None:
        for ok, what in zip(flags, ("gate.alpha", "gate.beta", "the gate values"), strict=True):
            if not ok:
                raise ValueError(
                    f"'{self.__class__.__name__}' has a non-finite (NaN or inf) '{what}': "
                    f"the gate cannot tell which components are dead. Training diverged "
                    f"or the gate parameters were overwritten; lower the learning rate or "
                    f"restore a checkpoint")

    @torch.no_grad()
    def checked_gate(self) -> Tensor:
        """The gate values, detached, after checking that they and the gate
        inputs are finite (``ValueError`` otherwise); for reports and
        compaction, where a NaN must not read as zero."""
        g = self._require_gate()
        a = g().detach()
        flags = torch.stack([g.alpha.isfinite().all(), g.beta.isfinite().all(),
                             a.isfinite().all()]).tolist()
        self._raise_if_not_finite(flags)
        return a

    @torch.no_grad()
    def num_alive(self) -> Tensor:
        """Surviving components (gate > 0) per group, ``[G]``, after the
        finiteness check of :meth:`checked_gate`."""
        g = self._require_gate()
        a = (self.checked_gate() > 0).to(g.alpha.dtype)
        return group_reduce(a, g.index, g.num_groups).reshape(-1).round().long()

    def penalty(self, p: float = 0.5) -> Tensor:
        r""":math:`\sum_s \lambda_s \sum_{g\in s}\mathcal{R}(a^g)` (0 for the plain variant)."""
        p = check_p(p)
        if self.gate is None:
            return self.group_stage.new_zeros((), dtype=torch.get_default_dtype())
        stash, self._stash = self._stash, None
        a = stash[0] if stash is not None and stash[1] == self._gate_version() else self.gate()
        index = self.gate.index
        weight = self._group_lambda if index is not None else self._group_lambda.unsqueeze(-1)
        # R is 1-homogeneous: R(lambda a) = lambda R(a) for lambda >= 0
        return pnorm_penalty(a * group_expand(weight, index), index, self.gate.num_groups, p,
                             validate=False)

    @torch.no_grad()
    def gate_matrix(self) -> Optional[Tensor]:
        """Gate values as a ``[G, n_max]`` matrix (ragged groups padded with NaN),
        for plots and reports."""
        if self.gate is None:
            return None
        a = self.checked_gate().float().cpu()
        if self.gate.index is None:
            return a
        sizes = self.gate.group_size.tolist()
        out = torch.full((len(sizes), max(sizes)), float("nan"))
        for g, seg in enumerate(a.split(sizes)):
            out[g, :len(seg)] = seg
        return out

    def gate_parameters(self) -> Iterator[nn.Parameter]:
        return iter(()) if self.gate is None else self.gate.parameters()

    def weight_parameters(self) -> Iterator[nn.Parameter]:
        gate = set(map(id, self.gate_parameters()))
        return (q for q in self.parameters() if id(q) not in gate)


class ShortcutA(nn.Module):
    """The parameter-free CIFAR shortcut of He et al. (2016), option A:
    subsample by ``stride`` and pad the new channels with zeros."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride

    def forward(self, x: Tensor) -> Tensor:
        x = x[:, :, ::self.stride, ::self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.out_channels - self.in_channels))


def projection(in_channels: int, out_channels: int, stride: int) -> nn.Module:
    """The identity when shapes agree, else a 1x1 convolution and batch norm."""
    if stride == 1 and in_channels == out_channels:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                         nn.BatchNorm2d(out_channels))


class ShortcutOnly(nn.Module):
    r"""What remains of a residual block whose residual branch was removed:
    :math:`\mathrm{relu}(\mathrm{shortcut}(x) + b)`, with ``b`` the constant the
    removed branch still contributed (the bias of its last batch norm), if any."""

    bias: Optional[Tensor]        # a buffer, declared for the type checker

    def __init__(self, shortcut: nn.Module, bias: Optional[Tensor] = None) -> None:
        super().__init__()
        self.shortcut = shortcut
        self.register_buffer("bias", None if bias is None else bias.detach().clone())

    def forward(self, x: Tensor) -> Tensor:
        x = self.shortcut(x)
        if self.bias is not None:
            x = x + self.bias.view(1, -1, 1, 1)
        return F.relu(x)


def scaled_input_conv(conv: nn.Conv2d, x: Tensor, scale: Optional[Tensor]) -> Tensor:
    """``conv(scale[c] * x[:, c])``, computed by scaling the weight's input
    channels instead of the (much larger) activations."""
    if scale is None:
        return conv(x)
    w = conv.weight * scale.to(conv.weight.dtype).view(1, -1, 1, 1)
    return F.conv2d(x, w, conv.bias, conv.stride, conv.padding, conv.dilation, conv.groups)
