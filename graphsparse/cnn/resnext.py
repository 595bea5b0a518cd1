"""CIFAR ResNeXt-29 (Xie et al., 2017) whose cardinality per block is learned
by the differentiable sparse gate (DSN paper, section "ResNeXt")."""
from __future__ import annotations

from typing import List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core import SparseGate
from ..utils.validation import check_choice, check_positive_int
from ._gating import GatedNetwork, Lambdas, projection, scaled_input_conv


class ResNeXtBlock(nn.Module):
    r"""Bottleneck block with ``cardinality`` branches of width ``width``:

    .. math::
        y = \mathrm{relu}\Big(\mathrm{shortcut}(x) + \mathrm{BN}\big(W_3
            \sum_i a_i\, h_i(x)\big)\Big),

    where branch :math:`h_i` is a 1x1 reduction to ``width`` channels and a 3x3
    convolution. All branches run as **one** 1x1 convolution to
    ``cardinality * width`` channels and one grouped 3x3 convolution
    (``groups=cardinality``); the gate scales each branch's ``width`` channels
    (``a`` repeated per channel), and the final 1x1 convolution sums the
    branches. The scaling is applied to the input channels of that convolution's
    weight, the same product at a fraction of the cost.

    Args:
        in_channels (int), out_channels (int), stride (int)
        cardinality (int): number of branches.
        width (int): channels of one branch.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int,
                 cardinality: int, width: int) -> None:
        super().__init__()
        self.cardinality, self.width = cardinality, width
        inner = cardinality * width
        self.conv1 = nn.Conv2d(in_channels, inner, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(inner)
        self.conv2 = nn.Conv2d(inner, inner, 3, stride, 1, groups=cardinality, bias=False)
        self.bn2 = nn.BatchNorm2d(inner)
        self.conv3 = nn.Conv2d(inner, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.shortcut = projection(in_channels, out_channels, stride)

    def branches(self, x: Tensor) -> Tensor:
        """The concatenated branch outputs ``[B, cardinality * width, H', W']``."""
        h = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(h)))

    def forward(self, x: Tensor, a: Optional[Tensor] = None) -> Tensor:
        scale = None if a is None else a.repeat_interleave(self.width)  # a: [cardinality]
        h = scaled_input_conv(self.conv3, self.branches(x), scale)
        return F.relu(self.shortcut(x) + self.bn3(h))


class ResNeXt(GatedNetwork):
    r"""CIFAR ResNeXt-:math:`(9n+2)` (ResNeXt-29: ``n = 3``), three stages of
    ``n`` bottleneck blocks; the branches of each block form one competition
    group, so every block learns its own cardinality.

    Stage :math:`s` has branches of width ``width * 2**s`` and outputs
    ``out_channels[s]`` channels; stages 2 and 3 start with stride 2 and a
    projection shortcut (the gate scales only the branches; the shortcut stays).
    A block whose gates are all zero reduces to its shortcut plus a constant.

    Args:
        depth (int): :math:`9n + 2`. (default: ``29``)
        cardinality (int): branches per block. (default: ``8``)
        width (int): branch width in the first stage (``64`` for 8x64d).
        num_classes (int): (default: ``10``)
        out_channels (sequence of int): block outputs per stage.
            (default: ``(256, 512, 1024)``)
        stem_channels (int): (default: ``64``)
        gated (bool): ``False`` for the plain network. (default: ``True``)
        lambdas (float or sequence of float): penalty weight per stage.
        normalization (str): the gate's normalization. (default: ``"sum"``)

    Shapes:
        - **input:** ``[B, 3, H, W]``
        - **output:** ``[B, num_classes]``
    """

    group_label, component_label = "block", "branch"

    def __init__(self, depth: int = 29, cardinality: int = 8, width: int = 64,
                 num_classes: int = 10, out_channels: Sequence[int] = (256, 512, 1024),
                 stem_channels: int = 64, gated: bool = True, lambdas: Lambdas = 0.0,
                 normalization: str = "sum", in_channels: int = 3) -> None:
        super().__init__()
        name = self.__class__.__name__
        check_positive_int(depth, "depth", name, minimum=11)
        if (depth - 2) % 9 != 0:
            raise ValueError(f"'{name}' expects 'depth' = 9n + 2 (11, 20, 29, ...) (got {depth})")
        check_positive_int(cardinality, "cardinality", name)
        check_positive_int(width, "width", name)
        check_choice(normalization, ("sum", "null", "none"), "normalization", name)
        self.depth, self.cardinality, self.width = depth, cardinality, width
        self.num_classes, self.out_channels = num_classes, tuple(out_channels)
        self.blocks_per_stage = n = (depth - 2) // 9
        self.stem = nn.Sequential(nn.Conv2d(in_channels, stem_channels, 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(stem_channels), nn.ReLU(inplace=True))
        blocks, stage_of, c = [], [], stem_channels
        for s, out in enumerate(out_channels):
            for i in range(n):
                blocks.append(ResNeXtBlock(c, out, 2 if (i == 0 and s > 0) else 1,
                                           cardinality, width * 2 ** s))
                stage_of.append(s)
                c = out
        self.blocks = nn.ModuleList(blocks)
        self.fc = nn.Linear(c, num_classes)
        gate = (SparseGate(cardinality, num_groups=len(blocks), normalization=normalization)
                if gated else None)
        self._init_gating(gate, stage_of, len(out_channels), lambdas)
        self.reset_parameters()

    def forward(self, x: Tensor) -> Tensor:
        a = self.gate_values()                                 # [num_blocks, cardinality]
        x = self.stem(x)
        for b, block in enumerate(self.blocks):
            x = block(x) if a is None else block(x, a[b])
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))

    def learned_cardinality(self) -> List[int]:
        """Branches kept (gate > 0) in each block."""
        if self.gate is None:
            return [getattr(b, "cardinality", 0) for b in self.blocks]
        return self.num_alive().tolist()

    def structure(self) -> dict:
        return {"cardinality per block": self.learned_cardinality()}
