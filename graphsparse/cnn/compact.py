"""Compaction: turn a trained gated CNN into an ordinary one.

Blocks, branches and input connections whose gate is exactly zero are removed
physically (their weights are sliced away), and the surviving gate values are
folded into the adjacent weights. The result is the same class with
``gate = None`` and an evaluation-mode output equal to the gated model's."""
from __future__ import annotations

import copy
from typing import Any, Callable, Dict, List, Tuple, Type

import torch
from torch import Tensor, nn

from ._gating import GatedNetwork, ShortcutOnly
from .densenet import DenseBlock, DenseLayer, DenseNet, GatedInput, Head
from .resnet import BasicBlock, ResNet
from .resnext import ResNeXt, ResNeXtBlock


def _select_bn(bn: nn.BatchNorm2d, idx: Tensor) -> nn.BatchNorm2d:
    out = nn.BatchNorm2d(idx.numel(), bn.eps, bn.momentum, bn.affine, bn.track_running_stats)
    out = out.to(bn.weight.device, bn.weight.dtype).train(bn.training)
    with torch.no_grad():
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(out, name).copy_(getattr(bn, name)[idx])
        if out.num_batches_tracked is not None and bn.num_batches_tracked is not None:
            out.num_batches_tracked.copy_(bn.num_batches_tracked)
    return out


def _pair(size: Tuple[int, ...]) -> Tuple[int, int]:
    """A Conv2d size attribute (typed ``tuple[int, ...]``; it has two entries)."""
    return size[0], size[1]


def _new_conv(conv: nn.Conv2d, weight: Tensor, groups: int = 1) -> nn.Conv2d:
    padding = conv.padding if isinstance(conv.padding, str) else _pair(conv.padding)
    out = nn.Conv2d(weight.shape[1] * groups, weight.shape[0], _pair(conv.kernel_size),
                    _pair(conv.stride), padding, _pair(conv.dilation), groups, bias=False)
    out = out.to(weight.device, weight.dtype)
    with torch.no_grad():
        out.weight.copy_(weight)
    return out


def bn_eval_bias(bn: nn.BatchNorm2d) -> Tensor:
    """The constant output of an eval-mode batch norm fed zeros."""
    assert bn.running_mean is not None and bn.running_var is not None   # tracked statistics
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return (bn.bias - bn.running_mean * scale).detach()


def _compact_resnet(model: ResNet, a: Tensor) -> None:
    a = a * model.gate_scale
    for s, stage in enumerate(model.stages):
        assert isinstance(stage, nn.Sequential)
        kept: List[nn.Module] = []
        for i, block in enumerate(stage):
            assert isinstance(block, BasicBlock)          # a gated ResNet's blocks
            if a[s, i] > 0:
                with torch.no_grad():                     # a * BN(z) is a BN
                    block.bn2.weight.mul_(a[s, i])
                    block.bn2.bias.mul_(a[s, i])
                kept.append(block)
            elif not isinstance(block.shortcut, nn.Identity):
                kept.append(ShortcutOnly(block.shortcut))  # transition: keep the shortcut
        model.stages[s] = nn.Sequential(*kept)


def _compact_resnext(model: ResNeXt, a: Tensor) -> None:
    for b, block in enumerate(model.blocks):
        assert isinstance(block, ResNeXtBlock)            # a gated ResNeXt's blocks
        alive = (a[b] > 0).nonzero().flatten()
        if alive.numel() == 0:
            model.blocks[b] = ShortcutOnly(block.shortcut, bn_eval_bias(block.bn3))
            continue
        w = block.width
        idx = (alive[:, None] * w + torch.arange(w, device=alive.device)).flatten()
        scale = a[b].repeat_interleave(w)[idx]
        block.conv1 = _new_conv(block.conv1, block.conv1.weight[idx])
        block.bn1 = _select_bn(block.bn1, idx)
        block.conv2 = _new_conv(block.conv2, block.conv2.weight[idx], groups=alive.numel())
        block.bn2 = _select_bn(block.bn2, idx)
        block.conv3 = _new_conv(block.conv3, block.conv3.weight[:, idx] * scale.view(1, -1, 1, 1))
        block.cardinality = alive.numel()


def _rewire(consumer: GatedInput, a: Tensor, positions: List[int], new_pos: dict) -> None:
    """Keeps the inputs at ``positions`` of ``consumer``, folding ``a`` into
    the linear map after its batch norm."""
    if not positions:          # every connection dead: keep one, scaled by zero
        positions, a = [0], torch.zeros_like(a)
    offsets = [0]
    for c in consumer.in_channels:
        offsets.append(offsets[-1] + c)
    idx = torch.cat([torch.arange(offsets[p], offsets[p + 1]) for p in positions])
    idx = idx.to(a.device)
    scale = a[consumer.input_map][idx]
    bn_name = "bn1" if hasattr(consumer, "bn1") else "bn"
    setattr(consumer, bn_name, _select_bn(getattr(consumer, bn_name), idx))
    if isinstance(consumer, Head):                 # the one consumer with a linear map
        with torch.no_grad():
            fc = nn.Linear(idx.numel(), consumer.fc.out_features).to(a.device, a.dtype)
            fc.weight.copy_(consumer.fc.weight[:, idx] * scale)
            fc.bias.copy_(consumer.fc.bias)
        consumer.fc = fc
    else:
        name = "conv1" if hasattr(consumer, "conv1") else "conv"
        conv = getattr(consumer, name)
        setattr(consumer, name, _new_conv(conv, conv.weight[:, idx] * scale.view(1, -1, 1, 1)))
    consumer._init_inputs([consumer.in_channels[p] for p in positions],
                          [new_pos[consumer.inputs[p]] for p in positions])


def _compact_densenet(model: DenseNet, a: Tensor) -> None:
    segments = list((a * model.gate_scale).split(model.group_sizes))
    k = 0
    for b, block in enumerate(model._dense_blocks()):
        consumers = block.consumers()
        seg = segments[k:k + len(consumers)]
        k += len(consumers)
        alive = [(s > 0).nonzero().flatten().tolist() for s in seg]
        # A layer survives when a surviving consumer reads it (walk backwards).
        L = len(block.layers)
        used = [False] * L + [True]
        for m in range(L, -1, -1):
            if used[m]:
                for p in alive[m]:
                    j = consumers[m].inputs[p]
                    if j > 0:
                        used[j - 1] = True
        kept = [l for l in range(L) if used[l]]
        new_pos = {0: 0, **{l + 1: i + 1 for i, l in enumerate(kept)}}
        for m in kept + [L]:
            _rewire(consumers[m], seg[m], alive[m], new_pos)
        layers: List[DenseLayer] = []
        for l in kept:
            layer = block.layers[l]
            assert isinstance(layer, DenseLayer)
            layers.append(layer)
        model.blocks[b] = DenseBlock(layers, block.out)


_COMPACTORS: Dict[Type[GatedNetwork], Callable[[Any, Tensor], None]] = {
    ResNet: _compact_resnet, ResNeXt: _compact_resnext, DenseNet: _compact_densenet}


@torch.no_grad()
def compact(model: GatedNetwork) -> nn.Module:
    """An ungated copy of ``model`` with every zero-gated component removed.

    * :class:`ResNet`: a block whose gate is zero is deleted; a dead first block
      of a stage (which changes resolution and width) is replaced by its
      parameter-free shortcut. Surviving gates scale the last batch norm.
    * :class:`ResNeXt`: dead branches are sliced out of the 1x1, grouped 3x3
      and 1x1 convolutions (the grouped convolution keeps one group per
      surviving branch); gates scale the last 1x1 convolution's inputs. A block
      with no branch left becomes its shortcut plus the constant its last
      batch norm added.
    * :class:`DenseNet`: dead connections are sliced out of each consumer's
      batch norm and next linear map, gates are folded into that map, and a
      layer that no surviving connection reads is deleted.

    * a model of :func:`~graphsparse.cnn.torchvision.gate_torchvision`: the
      plain torchvision model, see
      :func:`~graphsparse.cnn.torchvision.compact_torchvision`.

    The copy is in the same mode (train/eval) as ``model``; in eval mode the
    outputs agree with the gated model's up to float rounding.

    Raises:
        ValueError: if a gate input or value is not finite (a NaN gate is
            never read as a dead component).
    """
    from .torchvision import TorchvisionGated, compact_torchvision  # no torchvision import
    if isinstance(model, TorchvisionGated):
        return compact_torchvision(model)
    kind = next((k for k in _COMPACTORS if isinstance(model, k)), None)
    if kind is None:
        raise ValueError(f"'compact' supports ResNet, ResNeXt, DenseNet and the models of "
                         f"gate_torchvision (got {type(model).__name__})")
    out = copy.deepcopy(model)
    if out.gate is None:
        return out
    a = out.checked_gate()                 # ValueError on NaN: never read as dead
    _COMPACTORS[kind](out, a)
    out.gate = None
    out._stash = None
    return out
