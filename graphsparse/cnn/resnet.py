"""CIFAR ResNet (He et al., 2016) whose depth per stage is learned by the
differentiable sparse gate (DSN paper, section "ResNet")."""
from __future__ import annotations

from typing import List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core import SparseGate
from ..utils.validation import check_choice, check_positive_int
from ._gating import GatedNetwork, Lambdas, ShortcutA


class BasicBlock(nn.Module):
    r"""Two 3x3 convolutions with batch norm, post-activation:
    :math:`\mathrm{relu}(\mathrm{shortcut}(x) + a\, f(x))`, where ``a`` is the
    block's gate value (1 in the plain network)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = (nn.Identity() if stride == 1 and in_channels == out_channels
                         else ShortcutA(in_channels, out_channels, stride))

    def residual(self, x: Tensor) -> Tensor:
        return self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))

    def forward(self, x: Tensor, a: Optional[Tensor] = None) -> Tensor:
        r = self.residual(x)
        if a is not None:
            r = r * a.to(r.dtype)
        return F.relu(self.shortcut(x) + r)


class ResNet(GatedNetwork):
    r"""CIFAR ResNet-:math:`6n+2` (ResNet-20/32/56/110) with basic blocks and
    three stages of ``n`` blocks; each stage is one competition group.

    From the `DSN paper <https://arxiv.org/abs/1910.03201>`_, stage :math:`s`
    computes :math:`x_{i+1} = x_i + a^s_i f^s_i(x_i)` with
    :math:`a^s = \mathrm{gate}(\alpha^s, \beta^s)`, so blocks compete and some
    gates reach exactly zero; such blocks are skipped in the forward pass (no
    compute, and no gradient is lost: a zero gate passes none). The decision
    uses the host copy of the mask that
    :class:`~graphsparse.cnn._gating.GatedNetwork` refreshes without a host
    read per training step (see there).

    The first block of stages 2 and 3 halves the resolution and doubles the
    width. Its gate scales only its residual branch; the parameter-free
    shortcut (subsample and zero-pad, option A of He et al.) always remains, so
    with a zero gate the block reduces to its shortcut, which costs no
    parameters and no FLOPs. It still counts as a competitor of its stage.

    Args:
        depth (int): :math:`6n + 2`: 20, 32, 56, 110, ... (default: ``20``)
        num_classes (int): (default: ``10``)
        widths (sequence of int): channels of the three stages.
            (default: ``(16, 32, 64)``)
        gated (bool): ``False`` builds the plain ResNet from the same code.
            (default: ``True``)
        lambdas (float or sequence of float): penalty weight per stage,
            :math:`\lambda_s`. (default: ``0.0``)
        normalization (str): the gate's normalization. (default: ``"sum"``)
        in_channels (int): image channels. (default: ``3``)
        rescale (bool): multiply the gates by the number of blocks ``n`` in
            the forward pass, :math:`x_{i+1} = x_i + n\,a^s_i f^s_i(x_i)`, so
            that uniform gates (:math:`a = 1/n`, the initialization) reproduce
            the plain ResNet exactly instead of shrinking every residual branch
            by :math:`n`; which blocks are zero, and the penalty on :math:`a`,
            are unchanged. On a 12-epoch CPU schedule the unscaled gates cost
            about 6 points of accuracy even with no block removed.
            (default: ``True``)

    Shapes:
        - **input:** ``[B, in_channels, H, W]``
        - **output:** ``[B, num_classes]``
    """

    skips_dead_components = True

    group_label, component_label = "stage", "block"

    def __init__(self, depth: int = 20, num_classes: int = 10,
                 widths: Sequence[int] = (16, 32, 64), gated: bool = True,
                 lambdas: Lambdas = 0.0, normalization: str = "sum",
                 in_channels: int = 3, rescale: bool = True) -> None:
        super().__init__()
        name = self.__class__.__name__
        check_positive_int(depth, "depth", name, minimum=8)
        if (depth - 2) % 6 != 0:
            raise ValueError(f"'{name}' expects 'depth' = 6n + 2 (20, 32, 56, 110, ...) "
                             f"(got {depth})")
        check_choice(normalization, ("sum", "null", "none"), "normalization", name)
        self.depth, self.num_classes, self.widths = depth, num_classes, tuple(widths)
        self.blocks_per_stage = n = (depth - 2) // 6
        self.rescale = bool(rescale)
        #: multiplies every gate value in the forward pass (n with ``rescale``)
        self.gate_scale = float(n) if rescale else 1.0
        self.stem = nn.Sequential(nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True))
        stages, c = [], widths[0]
        for s, w in enumerate(widths):
            blocks = [BasicBlock(c if i == 0 else w, w, 2 if (i == 0 and s > 0) else 1)
                      for i in range(n)]
            stages.append(nn.Sequential(*blocks))
            c = w
        self.stages = nn.ModuleList(stages)
        self.fc = nn.Linear(c, num_classes)
        gate = SparseGate(n, num_groups=len(widths), normalization=normalization) if gated else None
        self._init_gating(gate, list(range(len(widths))), len(widths), lambdas)
        self.reset_parameters()

    def forward(self, x: Tensor) -> Tensor:
        a = self.gate_values()                               # [S, n]: one gate forward
        alive = self.alive or []  # cached host mask: no host sync per training step
        n = self.blocks_per_stage
        x = self.stem(x)
        for s, stage in enumerate(self.stages):
            assert isinstance(stage, nn.Sequential)
            for i, block in enumerate(stage):
                if a is None:
                    x = block(x)
                elif alive[s * n + i]:
                    x = block(x, a[s, i] * self.gate_scale)
                else:
                    assert isinstance(block, BasicBlock)     # every block of a gated ResNet
                    if not isinstance(block.shortcut, nn.Identity):
                        x = F.relu(block.shortcut(x))        # dead transition block
                    # else: a dead block is the identity; skip it
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))

    def learned_depth(self) -> List[int]:
        """Residual blocks kept (gate > 0) in each stage."""
        if self.gate is None:
            return [sum(isinstance(b, BasicBlock) for b in stage.children())
                    for stage in self.stages]
        return self.num_alive().tolist()

    def structure(self) -> dict:
        return {"depth per stage": self.learned_depth(),
                "blocks per stage": [len(list(stage.children())) for stage in self.stages]}

