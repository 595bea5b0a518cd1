"""Gate a torchvision ResNet, ResNeXt or DenseNet that the user already has,
and compact it back into an ordinary torchvision model.

:func:`gate_torchvision` wraps the model (or a copy) in a
:class:`~graphsparse.cnn._gating.GatedNetwork` whose one
:class:`~graphsparse.core.SparseGate` holds every competition group:

* ResNet / ResNeXt, **depth**: the residual blocks of each stage (``layer1`` ...
  ``layer4``) compete, :math:`x_{i+1} = \\mathrm{relu}(\\mathrm{sc}(x_i) +
  n_s a^s_i f_i(x_i))`;
* ResNeXt, **width**: the ``groups`` branches of every grouped-convolution
  bottleneck compete; the gate scales each branch's channels at the input of
  the last 1x1 convolution (``conv3``);
* DenseNet, **connections**: the feature maps a dense layer reads compete
  (one group per layer), and so do those read by the module after each block
  (the transition, or ``norm5`` and the classifier), so a layer that nothing
  reads any more can be removed. The gate acts after the reader's batch norm
  and ReLU (per channel), where training-mode batch norm cannot normalize it
  away.

With ``rescale=True`` (default) a gate is multiplied by its group's size
:math:`n`, so the uniform initial gates :math:`1/n` reproduce the plain
model's forward exactly (up to float rounding), pretrained weights included.

:func:`compact_torchvision` (also reached through
:func:`graphsparse.cnn.compact`) returns a plain torchvision model: the same
classes and module names, without the dead blocks, branches, connections and
layers, the surviving gate values folded into the weights.

torchvision is imported lazily: importing this module does not need it.
"""
from __future__ import annotations

import copy
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core import SparseGate
from ..utils.validation import check_choice
from ._gating import GatedNetwork, Lambdas, ShortcutOnly, scaled_input_conv
from .compact import _new_conv, _select_bn, bn_eval_bias

__all__ = ["gate_torchvision", "compact_torchvision", "TorchvisionGated",
           "GatedTorchvisionResNet", "GatedTorchvisionDenseNet", "SparseDenseLayer",
           "SparseDenseBlock"]

_STAGES = ("layer1", "layer2", "layer3", "layer4")

#: A torchvision model, stage or block. torchvision ships no type information,
#: and this module reads their submodules by name (``block.conv2``): untyped.
_TV = Any


def _torchvision():
    """``(torchvision.models.resnet, torchvision.models.densenet)``, imported now."""
    try:
        from torchvision.models import densenet, resnet
    except (ImportError, RuntimeError) as e:   # RuntimeError: a torch/torchvision mismatch
        raise ImportError(
            "graphsparse.cnn.torchvision needs an importable torchvision matching the "
            "installed torch (pip install 'graphsparse[torchvision]'); importing it "
            f"failed with: {e}") from e
    return resnet, densenet


def _group_layout(sizes: Sequence[int], rescale: bool) -> Tuple[Tensor, Tensor, List[int]]:
    """Ragged-gate index, per-component scale (the group size, or 1) and the
    offset of every group."""
    size = torch.tensor(list(sizes))
    index = torch.arange(len(sizes)).repeat_interleave(size)
    scale = (size.to(torch.get_default_dtype())[index] if rescale
             else torch.ones(index.numel()))
    offsets = [0]
    for n in sizes:
        offsets.append(offsets[-1] + n)
    return index, scale, offsets


def _check_bn(bn: nn.Module, where: str) -> None:
    if not (isinstance(bn, nn.BatchNorm2d) and bn.affine and bn.track_running_stats):
        raise ValueError(f"'compact_torchvision' folds gates into batch norms and slices them: "
                         f"'{where}' must be an affine nn.BatchNorm2d with running statistics "
                         f"(got {bn!r})")


def _check_conv(conv: nn.Conv2d, where: str) -> None:
    if conv.bias is not None:
        raise ValueError(f"'compact_torchvision' expects bias-free convolutions as torchvision "
                         f"builds them ('{where}' has a bias)")


class TorchvisionGated(GatedNetwork):
    r"""Base of the gated wrappers: holds the torchvision model as ``model``
    (its modules are trained in place), the gate, and the per-component scale
    :math:`n_g` (``rescale``).

    Only the gate is reset by :meth:`reset_parameters`: the weights are the
    user's."""

    model: _TV
    component_scale: Tensor       # a buffer, declared for the type checker

    def _init_wrapper(self, model: nn.Module, sizes: Sequence[int], group_stage: Sequence[int],
                      num_stages: int, lambdas: Lambdas, normalization: str,
                      rescale: bool) -> None:
        check_choice(normalization, ("sum", "null", "none"), "normalization",
                     self.__class__.__name__)
        self.model = model
        self.rescale = bool(rescale)
        self.group_sizes = list(sizes)
        index, scale, self.offsets = _group_layout(sizes, rescale)
        ref = next(model.parameters())
        gate = SparseGate(index=index, num_groups=len(sizes), normalization=normalization)
        self.register_buffer("component_scale", scale, persistent=False)
        self._init_gating(gate, group_stage, num_stages, lambdas)
        self.to(device=ref.device, dtype=ref.dtype)   # the gate in the model's precision
        self.train(model.training)

    def reset_parameters(self) -> None:
        """Resets the gate to the paper's initialization (every component equal)."""
        self._require_gate().reset_parameters()

    def scaled_gate_values(self) -> Tensor:
        """The gate of this step times :math:`n_g`, ``[E]``."""
        a = self.gate_values()
        assert a is not None                        # a wrapper always has a gate
        return a * self.component_scale

    def segment(self, a: Tensor, group: int) -> Tensor:
        return a[self.offsets[group]:self.offsets[group + 1]]

    def compact_model(self) -> nn.Module:  # pragma: no cover - abstract
        raise NotImplementedError


# ---------------------------------------------------------------- ResNet / ResNeXt


def resnet_block_forward(block: _TV, x: Tensor, depth: Optional[Tensor] = None,
                         branches: Optional[Tensor] = None) -> Tensor:
    r"""A torchvision ``BasicBlock`` / ``Bottleneck`` with gates:
    :math:`\mathrm{relu}(\mathrm{sc}(x) + d\, f(x))` where, in a bottleneck,
    branch ``g`` of the grouped 3x3 convolution is scaled by ``branches[g]`` at
    the input of ``conv3``. ``None`` means no gate (the plain block)."""
    identity = x if block.downsample is None else block.downsample(x)
    out = F.relu(block.bn1(block.conv1(x)))
    if hasattr(block, "conv3"):
        out = F.relu(block.bn2(block.conv2(out)))
        scale = None
        if branches is not None:
            scale = branches.repeat_interleave(block.conv2.out_channels // block.conv2.groups)
        out = block.bn3(scaled_input_conv(block.conv3, out, scale))
    else:
        out = block.bn2(block.conv2(out))
    if depth is not None:
        out = out * depth.to(out.dtype)
    return F.relu(out + identity)


class GatedTorchvisionResNet(TorchvisionGated):
    r"""A torchvision ``ResNet`` (ResNet-18 ... 152, ResNeXt, Wide ResNet) with
    learned depth and, for grouped bottlenecks, learned width.

    Groups, in order: for each stage (``layer1`` ... ``layer4``) one group of its
    blocks (``depth=True``), then one group of the ``groups`` branches of each
    of its blocks whose ``conv2`` is grouped (``width=True``). All groups of a
    stage share the penalty weight :math:`\lambda_s`.

    A block whose depth gate is zero is skipped (decided from the cached host
    mask, no host read per training step); a dead first block of a stage, which
    has a ``downsample`` projection, reduces to :math:`\mathrm{relu}(\mathrm{
    downsample}(x))`. A dead block without projection is the identity, because
    its input is already the output of a ReLU.

    Args:
        model (torchvision.models.ResNet): the network (used as is, not copied).
        depth (bool): gate the blocks of each stage. (default: ``True``)
        width (bool): gate the branches of grouped bottlenecks. (default: ``True``)
        lambdas (float or sequence of 4 floats): penalty weight per stage.
        normalization (str): the gate's normalization. (default: ``"sum"``)
        rescale (bool): multiply gates by their group's size. (default: ``True``)

    Shapes:
        - **input:** ``[B, 3, H, W]``
        - **output:** ``[B, num_classes]``
    """

    skips_dead_components = True
    group_label, component_label = "stage (blocks) / block (branches)", "block / branch"

    def __init__(self, model: nn.Module, depth: bool = True, width: bool = True,
                 lambdas: Lambdas = 0.0, normalization: str = "sum",
                 rescale: bool = True) -> None:
        super().__init__()
        resnet, _ = _torchvision()
        name = self.__class__.__name__
        if not isinstance(model, resnet.ResNet):
            raise ValueError(f"'{name}' expects a torchvision.models.ResNet (got "
                             f"{type(model).__name__})")
        sizes: List[int] = []
        stage_of: List[int] = []
        self.depth_group: List[Optional[int]] = []
        self.width_group: List[List[Optional[int]]] = []
        for s, stage_name in enumerate(_STAGES):
            stage = getattr(model, stage_name)
            for i, block in enumerate(stage):
                if type(block) not in (resnet.BasicBlock, resnet.Bottleneck):
                    raise ValueError(
                        f"'{name}' supports torchvision's BasicBlock and Bottleneck "
                        f"({stage_name}[{i}] is {type(block).__name__})")
            self.depth_group.append(len(sizes) if depth else None)
            if depth:
                sizes.append(len(stage))
                stage_of.append(s)
            groups: List[Optional[int]] = []
            for block in stage:
                grouped = isinstance(block, resnet.Bottleneck) and block.conv2.groups > 1
                groups.append(len(sizes) if (width and grouped) else None)
                if width and grouped:
                    sizes.append(block.conv2.groups)
                    stage_of.append(s)
            self.width_group.append(groups)
        if not sizes:
            raise ValueError(f"'{name}' has nothing to gate: 'depth' is False and no block "
                             f"has a grouped convolution (pass depth=True, or a ResNeXt "
                             f"with width=True)")
        self.gates_depth, self.gates_width = bool(depth), bool(width)
        self._init_wrapper(model, sizes, stage_of, len(_STAGES), lambdas, normalization,
                           rescale)

    def stages(self) -> List[_TV]:
        return [getattr(self.model, n) for n in _STAGES]

    def forward(self, x: Tensor) -> Tensor:
        a = self.scaled_gate_values()                  # [E]: one gate forward
        alive = self.alive or []                       # cached: no host sync per step
        m = self.model
        x = m.maxpool(m.relu(m.bn1(m.conv1(x))))
        for s, stage in enumerate(self.stages()):
            dg = self.depth_group[s]
            for i, block in enumerate(stage):
                d = None
                if dg is not None:
                    k = self.offsets[dg] + i
                    if not alive[k]:
                        if block.downsample is not None:
                            x = F.relu(block.downsample(x))
                        continue                       # else the identity: x >= 0
                    d = a[k]
                wg = self.width_group[s][i]
                x = resnet_block_forward(block, x, d, None if wg is None else self.segment(a, wg))
        return m.fc(torch.flatten(m.avgpool(x), 1))

    def learned_depth(self) -> List[int]:
        """Residual blocks kept (gate > 0) in each stage."""
        alive = self.num_alive().tolist()
        return [len(st) if g is None else alive[g]
                for st, g in zip(self.stages(), self.depth_group, strict=True)]

    def learned_cardinality(self) -> List[List[int]]:
        """Branches kept in each block of each stage (``groups`` when not gated)."""
        alive = self.num_alive().tolist()
        return [[getattr(b.conv2, "groups", 1) if g is None else alive[g]
                 for b, g in zip(st, gs, strict=True)]
                for st, gs in zip(self.stages(), self.width_group, strict=True)]

    def structure(self) -> dict:
        return {"depth per stage": self.learned_depth(),
                "blocks per stage": [len(st) for st in self.stages()],
                "cardinality per block": self.learned_cardinality()}

    @torch.no_grad()
    def compact_model(self) -> nn.Module:
        a = self.checked_gate() * self.component_scale   # ValueError on NaN
        m = copy.deepcopy(self.model)
        for s, stage_name in enumerate(_STAGES):
            kept: List[nn.Module] = []
            dg = self.depth_group[s]
            for i, block in enumerate(getattr(m, stage_name)):
                where = f"{stage_name}[{i}]"
                d = None
                if dg is not None:
                    d = a[self.offsets[dg] + i]
                    if not d > 0:
                        if block.downsample is not None:
                            kept.append(ShortcutOnly(block.downsample))
                        continue
                last = block.bn3 if hasattr(block, "conv3") else block.bn2
                _check_bn(last, where + ".bn3/bn2")
                wg = self.width_group[s][i]
                if wg is not None:
                    w = self.segment(a, wg)
                    alive = (w > 0).nonzero().flatten()
                    if alive.numel() == 0:   # every branch dead: shortcut + constant
                        bias = bn_eval_bias(last) * (1.0 if d is None else d)
                        sc = block.downsample if block.downsample is not None else nn.Identity()
                        kept.append(ShortcutOnly(sc, bias))
                        continue
                    _slice_branches(block, alive, w, where)
                if d is not None:                       # d * BN(z) is a BN
                    last.weight.mul_(d)
                    last.bias.mul_(d)
                kept.append(block)
            setattr(m, stage_name, nn.Sequential(*kept))
        return m


def _slice_branches(block: _TV, alive: Tensor, w: Tensor, where: str) -> None:
    """Keeps the branches ``alive`` of a grouped bottleneck, folding the gates
    ``w`` into the input channels of ``conv3``."""
    for name in ("conv1", "conv2", "conv3"):
        _check_conv(getattr(block, name), f"{where}.{name}")
    for name in ("bn1", "bn2"):
        _check_bn(getattr(block, name), f"{where}.{name}")
    cpg = block.conv2.out_channels // block.conv2.groups     # channels per branch
    idx = (alive[:, None] * cpg + torch.arange(cpg, device=alive.device)).flatten()
    scale = w.repeat_interleave(cpg)[idx].to(block.conv3.weight.dtype)
    block.conv1 = _new_conv(block.conv1, block.conv1.weight[idx])
    block.bn1 = _select_bn(block.bn1, idx)
    block.conv2 = _new_conv(block.conv2, block.conv2.weight[idx], groups=alive.numel())
    block.bn2 = _select_bn(block.bn2, idx)
    block.conv3 = _new_conv(block.conv3, block.conv3.weight[:, idx] * scale.view(1, -1, 1, 1))


# ---------------------------------------------------------------- DenseNet


class SparseDenseLayer(nn.Module):
    """A torchvision ``_DenseLayer`` (same submodules and names) that reads only
    the block features ``inputs`` (0: the block input, ``j``: the ``j``-th kept
    layer's output): what :func:`compact_torchvision` leaves of a dense layer."""

    # the submodules taken over from the torchvision layer (set by name in __init__)
    norm1: nn.Module
    relu1: nn.Module
    conv1: nn.Module
    norm2: nn.Module
    relu2: nn.Module
    conv2: nn.Module

    def __init__(self, layer: _TV, inputs: Sequence[int]) -> None:
        super().__init__()
        for name in ("norm1", "relu1", "conv1", "norm2", "relu2", "conv2"):
            setattr(self, name, getattr(layer, name))
        self.drop_rate = float(layer.drop_rate)
        self.inputs = list(inputs)

    def forward(self, features: List[Tensor]) -> Tensor:
        x = torch.cat([features[j] for j in self.inputs], 1)
        new = self.conv2(self.relu2(self.norm2(self.conv1(self.relu1(self.norm1(x))))))
        if self.drop_rate > 0:
            new = F.dropout(new, p=self.drop_rate, training=self.training)
        return new

    def extra_repr(self) -> str:
        return f"inputs={self.inputs}"


class SparseDenseBlock(nn.ModuleDict):
    """A torchvision ``_DenseBlock`` (a dict of ``denselayerN``) of
    :class:`SparseDenseLayer`; it outputs the concatenation of the features
    ``out_inputs`` only (those the next module reads)."""

    def __init__(self, layers: Dict[str, SparseDenseLayer], out_inputs: Sequence[int]) -> None:
        super().__init__(layers)
        self.out_inputs = list(out_inputs)

    def forward(self, init_features: Tensor) -> Tensor:
        features = [init_features]
        for layer in self.values():
            features.append(layer(features))
        return torch.cat([features[j] for j in self.out_inputs], 1)

    def extra_repr(self) -> str:
        return f"out_inputs={self.out_inputs}"


class GatedTorchvisionDenseNet(TorchvisionGated):
    r"""A torchvision ``DenseNet`` (121, 161, 169, 201) with learned connections.

    Layer :math:`l` of a block computes
    :math:`x_l = f_l([n_l a^l_0 x_0, \dots, n_l a^l_{l-1} x_{l-1}])`
    with :math:`n_l = l` (``rescale``); the module after the block (transition,
    or ``norm5`` + classifier) is one more group over all the block's features.
    The gate multiplies the channels after the reader's batch norm and ReLU,
    computed by scaling the input channels of the next convolution (or of the
    classifier). ``memory_efficient`` checkpointing is not used by the gated
    forward.

    Args:
        model (torchvision.models.DenseNet): the network (used as is).
        lambdas (float or sequence of floats): penalty weight per dense block.
        normalization (str): (default: ``"sum"``)
        rescale (bool): (default: ``True``)

    Shapes:
        - **input:** ``[B, 3, H, W]``
        - **output:** ``[B, num_classes]``
    """

    group_label, component_label = "layer (last: block output)", "input (0: block input)"
    channel_component: Tensor     # a buffer, declared for the type checker

    def __init__(self, model: nn.Module, lambdas: Lambdas = 0.0, normalization: str = "sum",
                 rescale: bool = True) -> None:
        super().__init__()
        _, densenet = _torchvision()
        name = self.__class__.__name__
        if not isinstance(model, densenet.DenseNet):
            raise ValueError(f"'{name}' expects a torchvision.models.DenseNet (got "
                             f"{type(model).__name__})")
        children = list(model.features.named_children())
        self.block_names: List[str] = []
        self.reader_names: List[str] = []
        #: channels of the features of each block: [block input, layer 1, ...]
        self.block_channels: List[List[int]] = []
        sizes: List[int] = []
        stage_of: List[int] = []
        channel_component: List[Tensor] = []
        for k, (child, mod) in enumerate(children):
            if not isinstance(mod, densenet._DenseBlock):
                continue
            nxt = children[k + 1] if k + 1 < len(children) else (None, None)
            last = len(self.block_names) == sum(isinstance(m, densenet._DenseBlock)
                                                for _, m in children) - 1
            ok = (isinstance(nxt[1], nn.BatchNorm2d) if last
                  else isinstance(nxt[1], densenet._Transition))
            layers = list(mod.values())
            if not ok or not all(type(l) is densenet._DenseLayer for l in layers):
                raise ValueError(f"'{name}' expects torchvision's layout: dense blocks of "
                                 f"_DenseLayer, each followed by a _Transition, the last by "
                                 f"'norm5' ({child} is followed by {nxt[0]!r})")
            channels = [layers[0].norm1.num_features] + [l.conv2.out_channels for l in layers]
            s = len(self.block_names)
            self.block_names.append(child)
            assert nxt[0] is not None               # ok: a module follows the block
            self.reader_names.append(nxt[0])
            self.block_channels.append(channels)
            for l in range(len(layers) + 1):               # readers: layers, then the next module
                base = sum(sizes)
                sizes.append(l + 1)
                stage_of.append(s)
                channel_component.append(
                    base + torch.arange(l + 1).repeat_interleave(torch.tensor(channels[:l + 1])))
        if not sizes:
            raise ValueError(f"'{name}' found no dense block in 'model.features'")
        self._init_wrapper(model, sizes, stage_of, len(self.block_names), lambdas,
                           normalization, rescale)
        self.register_buffer("channel_component", torch.cat(channel_component).to(
            self.component_scale.device), persistent=False)
        offsets = [0]
        for c in channel_component:
            offsets.append(offsets[-1] + c.numel())
        self.channel_offsets = offsets

    def forward(self, x: Tensor) -> Tensor:
        a = self.scaled_gate_values()
        ch = a[self.channel_component]      # gate of every input channel of every reader

        def scale(r: int) -> Tensor:
            return ch[self.channel_offsets[r]:self.channel_offsets[r + 1]]

        m = self.model
        blocks = dict(zip(self.block_names, range(len(self.block_names)), strict=True))
        readers = dict(zip(self.reader_names, range(len(self.reader_names)), strict=True))
        feats: List[Tensor] = []
        r = 0                                  # reader counter
        for child, mod in m.features.named_children():
            if child in blocks:
                feats = [x]
                for layer in mod.values():
                    h = F.relu(layer.norm1(torch.cat(feats, 1)))
                    h = scaled_input_conv(layer.conv1, h, scale(r))
                    new = layer.conv2(F.relu(layer.norm2(h)))
                    if layer.drop_rate > 0:
                        new = F.dropout(new, p=layer.drop_rate, training=self.training)
                    feats.append(new)
                    r += 1
            elif child in readers and readers[child] == len(self.reader_names) - 1:
                h = F.relu(mod(torch.cat(feats, 1)))                  # norm5, relu
                h = torch.flatten(F.adaptive_avg_pool2d(h, (1, 1)), 1)
                fc = m.classifier
                return F.linear(h, fc.weight * scale(r).to(fc.weight.dtype), fc.bias)
            elif child in readers:
                h = F.relu(mod.norm(torch.cat(feats, 1)))
                x = mod.pool(scaled_input_conv(mod.conv, h, scale(r)))
                r += 1
            else:
                x = mod(x)
        raise RuntimeError("unreachable: the last dense block is followed by 'norm5'")

    def connections_kept(self) -> List[List[int]]:
        """For each block, the feature maps kept (gate > 0) by each layer and,
        last, by the module after the block."""
        alive = self.num_alive().tolist()
        out, k = [], 0
        for channels in self.block_channels:
            out.append(alive[k:k + len(channels)])
            k += len(channels)
        return out

    def structure(self) -> dict:
        return {"connections kept per layer": self.connections_kept(),
                "connections per layer": [list(range(1, len(c) + 1))
                                          for c in self.block_channels]}

    @torch.no_grad()
    def compact_model(self) -> nn.Module:
        a = self.checked_gate() * self.component_scale      # ValueError on NaN
        m = copy.deepcopy(self.model)
        g = 0
        pairs = zip(self.block_names, self.reader_names, strict=True)
        for b, (block_name, reader_name) in enumerate(pairs):
            block = getattr(m.features, block_name)
            names, layers = list(block.keys()), list(block.values())
            L = len(layers)
            seg = [self.segment(a, g + l) for l in range(L + 1)]
            g += L + 1
            alive = [(s > 0).nonzero().flatten().tolist() for s in seg]
            used = [False] * L + [True]         # a layer survives if a survivor reads it
            for r in range(L, -1, -1):
                if used[r]:
                    for p in alive[r]:
                        if p > 0:
                            used[p - 1] = True
            kept = [l for l in range(L) if used[l]]
            new_pos = {0: 0, **{l + 1: i + 1 for i, l in enumerate(kept)}}
            channels = self.block_channels[b]
            new_layers: "OrderedDict[str, SparseDenseLayer]" = OrderedDict()
            for l in kept:
                layer = layers[l]
                where = f"features.{block_name}.{names[l]}"
                _check_conv(layer.conv1, where + ".conv1")
                _check_bn(layer.norm1, where + ".norm1")
                idx, sc, pos = _reader_slice(channels, seg[l], alive[l])
                layer.norm1 = _select_bn(layer.norm1, idx)
                layer.conv1 = _new_conv(layer.conv1, layer.conv1.weight[:, idx]
                                        * sc.view(1, -1, 1, 1))
                new_layers[names[l]] = SparseDenseLayer(layer, [new_pos[p] for p in pos])
            reader = getattr(m.features, reader_name)
            idx, sc, pos = _reader_slice(channels, seg[L], alive[L])
            if b == len(self.block_names) - 1:
                _check_bn(reader, f"features.{reader_name}")
                setattr(m.features, reader_name, _select_bn(reader, idx))
                fc = m.classifier
                new_fc = nn.Linear(idx.numel(), fc.out_features, fc.bias is not None)
                new_fc = new_fc.to(fc.weight.device, fc.weight.dtype)
                new_fc.weight.copy_(fc.weight[:, idx] * sc)
                if fc.bias is not None:
                    new_fc.bias.copy_(fc.bias)
                m.classifier = new_fc
            else:
                _check_conv(reader.conv, f"features.{reader_name}.conv")
                _check_bn(reader.norm, f"features.{reader_name}.norm")
                reader.norm = _select_bn(reader.norm, idx)
                reader.conv = _new_conv(reader.conv, reader.conv.weight[:, idx]
                                        * sc.view(1, -1, 1, 1))
            setattr(m.features, block_name,
                    SparseDenseBlock(new_layers, [new_pos[p] for p in pos]))
        return m


def _reader_slice(channels: Sequence[int], seg: Tensor, positions: List[int]
                  ) -> Tuple[Tensor, Tensor, List[int]]:
    """Input channels kept by a reader, their folded gate values and the kept
    feature positions (a reader with every connection dead keeps input 0,
    scaled by zero)."""
    if not positions:
        positions, seg = [0], torch.zeros_like(seg)
    offsets = [0]
    for c in channels[:seg.numel()]:
        offsets.append(offsets[-1] + c)
    idx = torch.cat([torch.arange(offsets[p], offsets[p + 1]) for p in positions]).to(seg.device)
    reps = torch.tensor(list(channels[:seg.numel()]), device=seg.device)
    return idx, seg.repeat_interleave(reps)[idx], positions


# ---------------------------------------------------------------- entry points


def gate_torchvision(model: nn.Module, inplace: bool = False, *, depth: bool = True,
                     width: bool = True, lambdas: Lambdas = 0.0, normalization: str = "sum",
                     rescale: bool = True) -> TorchvisionGated:
    r"""Puts the differentiable sparse gate into a torchvision model.

    * ``torchvision.models.ResNet`` (``resnet18`` ... ``resnet152``,
      ``resnext50_32x4d`` ..., ``wide_resnet50_2``): the blocks of each stage
      compete (``depth``), and the branches of each grouped bottleneck compete
      (``width``, ResNeXt) -- see :class:`GatedTorchvisionResNet`;
    * ``torchvision.models.DenseNet``: the incoming feature maps of every dense
      layer and of every block's reader compete -- see
      :class:`GatedTorchvisionDenseNet` (``depth`` / ``width`` do not apply).

    At initialization (``rescale=True``) the gated model computes the same
    function as ``model``, in training and in evaluation mode. Train it with
    ``loss + gated.penalty()``; :func:`compact_torchvision` (or
    :func:`graphsparse.cnn.compact`) returns the plain torchvision model
    without the dead parts.

    Args:
        model (nn.Module): a torchvision ResNet or DenseNet.
        inplace (bool): train ``model``'s own modules (``True``), or a deep copy
            (``False``). ``model``'s own ``forward`` stays ungated either way.
            (default: ``False``)
        depth (bool), width (bool): which ResNet groups to gate.
        lambdas (float or sequence of floats): penalty weight per stage
            (ResNet: 4) or per dense block (DenseNet: 4).
        normalization (str): ``"sum"``, ``"null"`` or ``"none"``.
        rescale (bool): scale every gate by its group's size.

    Returns:
        A :class:`~graphsparse.cnn._gating.GatedNetwork` wrapping the model
        (``.model``); ``.penalty()``, ``.structure()``, ``.gate_parameters()``.
    """
    resnet, densenet = _torchvision()
    if not inplace:
        model = copy.deepcopy(model)
    if isinstance(model, resnet.ResNet):
        return GatedTorchvisionResNet(model, depth, width, lambdas, normalization, rescale)
    if isinstance(model, densenet.DenseNet):
        return GatedTorchvisionDenseNet(model, lambdas, normalization, rescale)
    raise ValueError(f"'gate_torchvision' supports torchvision.models.ResNet (ResNet, ResNeXt, "
                     f"Wide ResNet) and torchvision.models.DenseNet (got {type(model).__name__})")


def compact_torchvision(gated: TorchvisionGated) -> nn.Module:
    """The plain torchvision model of ``gated`` without its dead blocks,
    branches, connections and layers; gate values are folded into the weights.

    ResNet: a dead block is removed (a dead first block with a ``downsample``
    becomes :class:`~graphsparse.cnn.ShortcutOnly`), dead branches are sliced out
    of ``conv1``, ``bn1``, the grouped ``conv2`` (one group per surviving
    branch), ``bn2`` and ``conv3``'s inputs. DenseNet: dense blocks become
    :class:`SparseDenseBlock` of :class:`SparseDenseLayer` (the same
    submodule names, each reading only its surviving inputs), transitions,
    ``norm5`` and the classifier are sliced. In evaluation mode the output
    equals the gated model's up to float rounding.

    Raises:
        ValueError: for a non-finite gate, or layers compaction cannot slice.
    """
    if not isinstance(gated, TorchvisionGated):
        raise ValueError(f"'compact_torchvision' expects a model returned by gate_torchvision "
                         f"(got {type(gated).__name__})")
    return gated.compact_model().train(gated.training)
