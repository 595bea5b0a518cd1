"""CIFAR DenseNet-BC (Huang et al., 2017) whose dense connections are learned
by the differentiable sparse gate (DSN paper, section "DenseNet")."""
from __future__ import annotations

from typing import List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core import SparseGate
from ..utils.validation import check_choice, check_positive_int
from ._gating import GatedNetwork, Lambdas, scaled_input_conv


class GatedInput(nn.Module):
    r"""Base of every consumer of a dense block's feature maps: it reads the
    features ``inputs`` (0 is the block input, ``j`` the output of layer ``j``),
    concatenated, normalizes them with its batch norm and ReLU, and scales the
    channels of input ``j`` by the gate value :math:`a_j`.

    The gate is applied **after** the consumer's batch norm and ReLU (which act
    per channel, so this is still "input ``j`` scaled by :math:`a_j`"): batch
    norm in training mode is invariant to the scale of its input, so a gate in
    front of it would receive no gradient from the loss. Connection ``j``
    contributes :math:`a_j W_j\,\mathrm{relu}(\mathrm{BN}_j(x_j))` to the next
    linear map, zero when :math:`a_j = 0`, and :math:`a_j` folds into ``W_j``.

    The scaling multiplies the input channels of the next linear map's weight
    by ``a[input_map]`` (``input_map[c]`` is the input that channel ``c`` comes
    from): the same product as scaling the activations, at a fraction of the
    cost."""

    input_map: Tensor             # a buffer, declared for the type checker

    def _init_inputs(self, channels: Sequence[int], inputs: Optional[Sequence[int]]) -> None:
        self.inputs = list(range(len(channels))) if inputs is None else list(inputs)
        self.in_channels = list(channels)
        index = torch.arange(len(channels)).repeat_interleave(torch.tensor(channels))
        self.register_buffer("input_map", index, persistent=False)

    def gather(self, feats: List[Tensor], bn: nn.BatchNorm2d) -> Tensor:
        """``relu(bn([x_j for j in inputs]))``."""
        return F.relu(bn(torch.cat([feats[j] for j in self.inputs], 1)))

    def scale(self, a: Optional[Tensor]) -> Optional[Tensor]:
        """The gate value of every input channel, ``[C_in]``."""
        return None if a is None else a[self.input_map]


class DenseLayer(GatedInput):
    """Bottleneck layer: BN-ReLU-Conv1x1(``bn_size * growth``)-BN-ReLU-Conv3x3(``growth``).

    Args:
        channels (sequence of int): channels of each input feature map.
        growth_rate (int), bn_size (int)
        inputs (sequence of int, optional): which block features it reads
            (default: all preceding ones).
    """

    def __init__(self, channels: Sequence[int], growth_rate: int, bn_size: int = 4,
                 inputs: Optional[Sequence[int]] = None) -> None:
        super().__init__()
        self._init_inputs(channels, inputs)
        self.bn1 = nn.BatchNorm2d(sum(channels))
        self.conv1 = nn.Conv2d(sum(channels), bn_size * growth_rate, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(bn_size * growth_rate)
        self.conv2 = nn.Conv2d(bn_size * growth_rate, growth_rate, 3, 1, 1, bias=False)

    def forward(self, feats: List[Tensor], a: Optional[Tensor] = None) -> Tensor:
        x = scaled_input_conv(self.conv1, self.gather(feats, self.bn1), self.scale(a))
        return self.conv2(F.relu(self.bn2(x)))


class Transition(GatedInput):
    """Between dense blocks: BN-ReLU-Conv1x1-AvgPool2 over the block's features."""

    def __init__(self, channels: Sequence[int], out_channels: int,
                 inputs: Optional[Sequence[int]] = None) -> None:
        super().__init__()
        self._init_inputs(channels, inputs)
        self.bn = nn.BatchNorm2d(sum(channels))
        self.conv = nn.Conv2d(sum(channels), out_channels, 1, bias=False)

    def forward(self, feats: List[Tensor], a: Optional[Tensor] = None) -> Tensor:
        return F.avg_pool2d(scaled_input_conv(self.conv, self.gather(feats, self.bn),
                                              self.scale(a)), 2)


class Head(GatedInput):
    """After the last block: BN-ReLU-global average pool-linear."""

    def __init__(self, channels: Sequence[int], num_classes: int,
                 inputs: Optional[Sequence[int]] = None) -> None:
        super().__init__()
        self._init_inputs(channels, inputs)
        self.bn = nn.BatchNorm2d(sum(channels))
        self.fc = nn.Linear(sum(channels), num_classes)

    def forward(self, feats: List[Tensor], a: Optional[Tensor] = None) -> Tensor:
        x = torch.flatten(F.adaptive_avg_pool2d(self.gather(feats, self.bn), 1), 1)
        scale = self.scale(a)
        return self.fc(x) if scale is None else F.linear(x, self.fc.weight * scale, self.fc.bias)


class DenseBlock(nn.Module):
    """``layers`` and the ``out`` module (a :class:`Transition` or the
    :class:`Head`) that consumes the block's features."""

    def __init__(self, layers: Sequence[DenseLayer], out: GatedInput) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.out = out

    def consumers(self) -> List[GatedInput]:
        return [*self.layers, self.out]

    def forward(self, x: Tensor, a: Optional[Sequence[Tensor]] = None) -> Tensor:
        feats = [x]
        for k, layer in enumerate(self.layers):
            feats.append(layer(feats, None if a is None else a[k]))
        return self.out(feats, None if a is None else a[-1])


class DenseNet(GatedNetwork):
    r"""CIFAR DenseNet-BC (bottleneck and compression) with learned connections.

    From the `DSN paper <https://arxiv.org/abs/1910.03201>`_, layer :math:`l`
    of stage :math:`s` computes

    .. math::
        x_l = f_l\big([a^{l}_0 x_0, a^{l}_1 x_1, \dots, a^{l}_{l-1} x_{l-1}]\big),

    one competition group per layer over its incoming feature maps (the gate
    acts after the layer's per-channel batch norm and ReLU, see
    :class:`GatedInput`). The module
    that consumes a block's output (the transition, or the classifier head
    after the last block) is gated the same way, so a layer whose output no
    surviving connection reads can be removed entirely by
    :func:`~graphsparse.cnn.compact`. All groups of the network (sizes
    :math:`1, \dots, L + 1` per block) live in one ragged
    :class:`~graphsparse.core.SparseGate`. A group of size 1 (the first layer of
    a block) is constantly 1 under ``"sum"`` normalization.

    Args:
        depth (int): :math:`6L + 4` with :math:`L` layers per block
            (DenseNet-BC-100: ``L = 16``). (default: ``100``)
        growth_rate (int): :math:`k`. (default: ``12``)
        compression (float): transition output fraction. (default: ``0.5``)
        num_blocks (int): (default: ``3``)
        num_classes (int): (default: ``10``)
        bn_size (int): bottleneck width factor. (default: ``4``)
        gated (bool): ``False`` for the plain network. (default: ``True``)
        lambdas (float or sequence of float): penalty weight per block.
        normalization (str): the gate's normalization. (default: ``"sum"``)
        rescale (bool): multiply each gate by its group's size :math:`n_l`
            (the number of inputs of its reader), so that the uniform initial
            gates :math:`1/n_l` reproduce the plain DenseNet exactly instead of
            shrinking every input (and the classifier's logits) by
            :math:`n_l`; which connections are zero, and the penalty on
            :math:`a`, are unchanged. (default: ``True``)

    Shapes:
        - **input:** ``[B, 3, H, W]``
        - **output:** ``[B, num_classes]``
    """

    group_label, component_label = "layer (last: block output)", "input (0: block input)"
    gate_scale: Tensor            # a buffer, declared for the type checker

    def __init__(self, depth: int = 100, growth_rate: int = 12, compression: float = 0.5,
                 num_blocks: int = 3, num_classes: int = 10, bn_size: int = 4,
                 gated: bool = True, lambdas: Lambdas = 0.0, normalization: str = "sum",
                 in_channels: int = 3, rescale: bool = True) -> None:
        super().__init__()
        name = self.__class__.__name__
        check_positive_int(depth, "depth", name, minimum=2 * num_blocks + 4)
        if (depth - 4) % (2 * num_blocks) != 0:
            raise ValueError(f"'{name}' expects 'depth' = {2 * num_blocks}L + 4 "
                             f"(40, 100, 190, ... for 3 blocks) (got {depth})")
        check_positive_int(growth_rate, "growth_rate", name)
        check_choice(normalization, ("sum", "null", "none"), "normalization", name)
        if not 0 < compression <= 1:
            raise ValueError(f"'{name}' expects 'compression' in (0, 1] (got {compression})")
        self.depth, self.growth_rate, self.compression = depth, growth_rate, compression
        self.num_classes = num_classes
        self.layers_per_block = L = (depth - 4) // (2 * num_blocks)
        c = 2 * growth_rate
        self.stem = nn.Conv2d(in_channels, c, 3, 1, 1, bias=False)
        blocks, sizes, stage_of = [], [], []
        for s in range(num_blocks):
            channels = [c] + [growth_rate] * L
            layers = [DenseLayer(channels[:l + 1], growth_rate, bn_size) for l in range(L)]
            out: GatedInput
            if s + 1 < num_blocks:
                out = Transition(channels, int(sum(channels) * compression))
                c = out.conv.out_channels
            else:
                out = Head(channels, num_classes)
            blocks.append(DenseBlock(layers, out))
            sizes += list(range(1, L + 2))
            stage_of += [s] * (L + 1)
        self.blocks = nn.ModuleList(blocks)
        self.group_sizes = sizes
        self.rescale = bool(rescale)
        index = torch.arange(len(sizes)).repeat_interleave(torch.tensor(sizes))
        gate = None
        if gated:
            gate = SparseGate(index=index, num_groups=len(sizes), normalization=normalization)
        #: multiplies every gate value in the forward pass (its group's size with ``rescale``)
        scale = torch.tensor(sizes, dtype=torch.get_default_dtype())[index]
        self.register_buffer("gate_scale", scale if rescale else torch.ones_like(scale),
                             persistent=False)
        self._init_gating(gate, stage_of, num_blocks, lambdas)
        self.reset_parameters()

    def forward(self, x: Tensor) -> Tensor:
        a = self.gate_values()                                 # [E], one gate forward
        segments = None if a is None else (a * self.gate_scale).split(self.group_sizes)
        x = self.stem(x)
        k = 0
        for block in self._dense_blocks():
            n = len(block.layers) + 1
            x = block(x, None if segments is None else segments[k:k + n])
            k += n
        return x

    def _dense_blocks(self) -> List[DenseBlock]:
        """The entries of :attr:`blocks`, typed."""
        out = []
        for b in self.blocks:
            assert isinstance(b, DenseBlock)
            out.append(b)
        return out

    def connections_kept(self) -> List[List[int]]:
        """For each block, the number of incoming feature maps kept (gate > 0)
        by each layer and, last, by the block's output consumer."""
        if self.gate is None:
            return [[len(c.inputs) for c in b.consumers()] for b in self._dense_blocks()]
        alive = self.num_alive().tolist()
        out, k = [], 0
        for b in self._dense_blocks():
            n = len(b.layers) + 1
            out.append(alive[k:k + n])
            k += n
        return out

    def structure(self) -> dict:
        return {"connections kept per layer": self.connections_kept(),
                "connections per layer": [[len(c.inputs) for c in b.consumers()]
                                          for b in self._dense_blocks()]}
