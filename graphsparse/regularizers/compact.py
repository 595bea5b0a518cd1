"""Channel compaction: physically remove the channels that a structured
regularizer zeroed, so the sparse network is also a smaller, faster one.

A channel of a convolution / linear layer is removed when that is exact:

* *dead output*: its weights and bias are zero (or, when batch norms follow,
  the last norm's scale and shift are zero), so the channel is zero after
  every zero-preserving operation (ReLU, pooling, flatten);
* *dead input*: every consumer ignores it (its input columns are zero).

Its row is cut from the layer (and the norms), and the matching input channels
(features ``c * s .. (c + 1) * s - 1`` after a flatten of ``s`` positions per
channel) are cut from the next layers. Removal repeats until nothing changes.
Channels coupled to others (residual additions, concatenations, the model
output) are left alone and listed in the report; with ``strict=True`` they are
an error naming the layer.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Tuple

import torch
from torch import Tensor, nn

from ._channels import ChannelLink, channel_links
from ._layers import Layer


@dataclass
class CompactionReport:
    """``channels``: ``{layer: (before, after)}`` output channels of every
    compactable layer; ``skipped``: ``{layer: reason}`` for layers with zero
    channels that could not be removed."""
    channels: Dict[str, Tuple[int, int]] = field(default_factory=dict)
    skipped: Dict[str, str] = field(default_factory=dict)

    @property
    def removed(self) -> int:
        return sum(b - a for b, a in self.channels.values())

    def __str__(self) -> str:
        lines = [f"{name:<24} {b:>6} -> {a:<6}" for name, (b, a) in self.channels.items()]
        lines += [f"{name:<24} skipped: {why}" for name, why in self.skipped.items()]
        return "\n".join(lines)


def _rows_zero(m: Layer) -> Tensor:
    dead = m.weight.detach().flatten(1).eq(0).all(dim=1)
    if m.bias is not None:
        dead &= m.bias.detach().eq(0)
    return dead


def _dead_channels(link: ChannelLink) -> Tensor:
    if link.norms:
        norm = link.norms[-1][1]
        n = norm.num_features
        dead = norm.weight.detach().eq(0) & norm.bias.detach().eq(0) if norm.affine \
            else torch.zeros(n, dtype=torch.bool)
    else:
        dead = _rows_zero(link.producer)
    unused = torch.ones_like(dead) if link.consumers else torch.zeros_like(dead)
    for _, m, spatial in link.consumers:
        w = m.weight.detach()
        if isinstance(m, nn.Linear):
            assert spatial is not None          # links without it are coupled
            unused &= w.eq(0).all(dim=0).reshape(len(dead), spatial).all(dim=1)
        else:
            unused &= w.eq(0).transpose(0, 1).flatten(1).all(dim=1)
    return dead.cpu() | unused.cpu()


def _replace(m: nn.Module, name: str, value: Tensor) -> None:
    old = getattr(m, name)
    if isinstance(old, nn.Parameter):
        setattr(m, name, nn.Parameter(value.contiguous(), requires_grad=old.requires_grad))
    else:
        setattr(m, name, value.contiguous())


@torch.no_grad()
def _remove(link: ChannelLink, keep: Tensor) -> None:
    m = link.producer
    k = keep.to(m.weight.device)
    for attr in ("weight", "bias"):
        if getattr(m, attr) is not None:
            _replace(m, attr, getattr(m, attr)[k])
    if isinstance(m, nn.Linear):
        m.out_features = len(keep)
    else:
        m.out_channels = len(keep)
    for _, norm in link.norms:
        for attr in ("weight", "bias", "running_mean", "running_var"):
            if getattr(norm, attr, None) is not None:
                _replace(norm, attr, getattr(norm, attr)[k])
        norm.num_features = len(keep)
    for _, c, spatial in link.consumers:
        if isinstance(c, nn.Linear):
            assert spatial is not None          # links without it are coupled
            cols = (k[:, None] * spatial + torch.arange(spatial, device=k.device)).flatten()
            _replace(c, "weight", c.weight[:, cols])
            c.in_features = cols.numel()
        else:
            _replace(c, "weight", c.weight[:, k])
            c.in_channels = len(keep)


def _num_channels(m: Layer) -> int:
    return m.weight.shape[0]


def compact_channels(model: nn.Module, example_input, strict: bool = False
                     ) -> CompactionReport:
    """Removes zero channels from ``model`` in place (see the module docstring).

    Call it after training (e.g. after ``regularizer.finalize()``): optimizer
    states and a regularizer's copies of the weights no longer match the
    shrunk layers. At least one channel of each layer is kept.

    Args:
        model (torch.nn.Module): a model that ``torch.fx`` can trace.
        example_input (Tensor): a batch, used to map flattened features back to
            channels.
        strict (bool, optional): raise when a layer has zero channels that are
            coupled and cannot be removed. (default: ``False``)

    Returns:
        :class:`CompactionReport`.

    Raises:
        ValueError: the model cannot be traced, or (``strict``) a layer's zero
            channels are coupled; the message names the layer and the reason.
    """
    was_training = model.training
    model.eval()
    links = channel_links(model, example_input)
    report = CompactionReport()
    for name, link in links.items():
        if link.coupled is None and any(s is None for _, c, s in link.consumers
                                        if isinstance(c, nn.Linear)):
            link.coupled = "a flatten of unknown shape (pass 'example_input')"
        if link.coupled is None:
            report.channels[name] = (_num_channels(link.producer),) * 2
        elif bool(_rows_zero(link.producer).any()):
            reason = f"its channels are coupled to {link.coupled}"
            if strict:
                raise ValueError(f"compact_channels cannot remove the zero channels of layer "
                                 f"'{name}': {reason}; compaction supports chains "
                                 f"conv/linear -> norm/activation/pooling/flatten -> conv/linear")
            report.skipped[name] = reason
    changed = True
    while changed:
        changed = False
        for name in report.channels:
            link = links[name]
            dead = _dead_channels(link)
            if not bool(dead.any()) or len(dead) == 1:
                continue
            keep = (~dead).nonzero().flatten()
            if keep.numel() == 0:
                keep = torch.zeros(1, dtype=torch.long)
            if keep.numel() < len(dead):
                _remove(link, keep)
                changed = True
    for name in report.channels:
        report.channels[name] = (report.channels[name][0], _num_channels(links[name].producer))
    model.train(was_training)
    return report
