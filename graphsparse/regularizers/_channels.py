"""Channel dependencies of a model, found by tracing it with ``torch.fx``.

For every convolution / linear layer (the *producer*) we follow its output
through operations that act on each channel separately and map a zero channel
to zero (batch norm, ReLU-like activations, pooling, dropout, flatten) until the
next convolution / linear layers (the *consumers*). A producer whose channels
reach anything else (a residual addition, a concatenation, the model output, an
unknown function) is *coupled*: its channels cannot be removed on their own.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Set, Tuple

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from ._layers import NORMS, REGULARIZABLE, Layer, Norm

_ZERO_PRESERVING_MODULES = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Tanh, nn.Hardtanh,
    nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.Identity,
    nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d,
)
_ZERO_PRESERVING_FUNCTIONS = {
    F.relu, torch.relu, F.relu6, F.leaky_relu, F.elu, F.gelu, F.silu, torch.tanh, F.dropout,
    F.max_pool1d, F.max_pool2d, F.max_pool3d, F.avg_pool1d, F.avg_pool2d, F.avg_pool3d,
    F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d,
    F.adaptive_max_pool1d, F.adaptive_max_pool2d, F.adaptive_max_pool3d,
}
_ZERO_PRESERVING_METHODS = {"relu", "tanh", "contiguous"}
_FLATTEN_METHODS = {"flatten", "view", "reshape"}

Named = Tuple[str, Norm]


@dataclass
class ChannelLink:
    """How the output channels of one producer layer are used."""
    name: str
    producer: Layer
    norms: List[Named] = field(default_factory=list)
    #: ``(name, module, spatial)``: channel ``c`` is input channel ``c`` of a
    #: convolution, or features ``[c * spatial, (c + 1) * spatial)`` of a linear
    #: layer after a flatten (``spatial`` is None when no shapes were traced).
    consumers: List[Tuple[str, Layer, Optional[int]]] = field(default_factory=list)
    coupled: Optional[str] = None


def trace(model: nn.Module, example_input=None) -> fx.GraphModule:
    try:
        gm = fx.symbolic_trace(model)
    except Exception as e:  # tracing failures come in many types
        raise ValueError(
            f"channel analysis needs a model that torch.fx can trace; tracing "
            f"'{type(model).__name__}' failed ({type(e).__name__}: {e})") from e
    if example_input is not None:
        ShapeProp(gm).propagate(example_input)
    return gm


def _shape(node) -> Optional[Tuple[int, ...]]:
    meta = node.meta.get("tensor_meta") if isinstance(node, fx.Node) else None
    return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None


def _flatten_spatial(src: fx.Node, out: fx.Node, spatial) -> Tuple[Optional[int], Optional[str]]:
    """Features per channel after a flatten of ``src`` into ``out``, or a reason."""
    s_in, s_out = _shape(src), _shape(out)
    if s_in is None or s_out is None:
        return None, None
    if len(s_out) != 2 or s_out[0] != s_in[0] or len(s_in) < 2 or \
            s_out[1] != math.prod(s_in[1:]):
        return None, f"reshape '{out.name}' from {s_in} to {s_out} is not a flatten from dim 1"
    return (spatial or 1) * math.prod(s_in[2:]), None


def _follow(start: fx.Node, modules: Dict[str, nn.Module], link: ChannelLink) -> None:
    # (node, its input from the producer, features per channel, norms on the way)
    stack: List[Tuple[fx.Node, fx.Node, Optional[int], Tuple[Named, ...]]] = [
        (u, start, 1, ()) for u in start.users]
    paths_norms: Set[Tuple[Named, ...]] = set()
    while stack:
        node, src, spatial, norms = stack.pop()
        nxt: Optional[int] = None
        reason: Optional[str] = None
        if node.op == "call_module":
            target = str(node.target)           # a call_module's target: the module's name
            m = modules[target]
            if isinstance(m, REGULARIZABLE):
                if node.args[:1] != (src,) or len(node.args) != 1 or node.kwargs:
                    reason = f"'{node.target}' takes it with other arguments"
                elif getattr(m, "groups", 1) != 1:
                    reason = f"'{node.target}' is a grouped convolution"
                else:
                    link.consumers.append((target, m, spatial))
                    paths_norms.add(norms)
                    continue
            elif isinstance(m, NORMS):
                nxt, norms = spatial, norms + ((target, m),)
            elif isinstance(m, _ZERO_PRESERVING_MODULES):
                nxt = spatial
            elif isinstance(m, nn.Flatten) and m.start_dim == 1 and m.end_dim == -1:
                nxt, reason = _flatten_spatial(src, node, spatial)
                nxt = nxt or -1
            else:
                reason = f"module '{node.target}' ({type(m).__name__})"
        elif node.op == "call_function" and node.target in _ZERO_PRESERVING_FUNCTIONS \
                and node.args[:1] == (src,):
            nxt = spatial
        elif (node.op == "call_function" and node.target is torch.flatten) or \
                (node.op == "call_method" and node.target in _FLATTEN_METHODS):
            nxt, reason = _flatten_spatial(src, node, spatial)
            nxt = nxt or -1
        elif node.op == "call_method" and node.target in _ZERO_PRESERVING_METHODS:
            nxt = spatial
        elif node.op == "output":
            reason = "the model's output"
        else:
            reason = f"'{node.name}' ({node.op} {getattr(node.target, '__name__', node.target)})"
        if reason is not None:
            link.coupled = reason
            return
        stack.extend((u, node, None if nxt == -1 else nxt, norms) for u in node.users)
    if len(paths_norms) > 1:
        link.coupled = "its paths pass through different batch norms"
    elif paths_norms:
        link.norms = list(next(iter(paths_norms)))


def channel_links(model: nn.Module, example_input=None) -> Dict[str, ChannelLink]:
    """``{producer name: ChannelLink}`` for every conv / linear layer of ``model``.

    ``example_input`` (a batch) lets flattens be mapped back to channels; without
    it a producer followed by a flatten has consumers with ``spatial=None``.
    """
    gm = trace(model, example_input)
    modules = dict(gm.named_modules())
    links: Dict[str, ChannelLink] = {}
    for node in gm.graph.nodes:
        m = modules[node.target] if node.op == "call_module" else None
        if not isinstance(m, REGULARIZABLE):
            continue
        if node.target in links:
            links[node.target].coupled = "the layer is called more than once"
            continue
        link = links[node.target] = ChannelLink(node.target, m)
        if getattr(m, "groups", 1) != 1:
            link.coupled = "grouped convolutions are not supported"
            continue
        _follow(node, modules, link)
    return links


def attached_norms(model: nn.Module) -> Dict[nn.Module, Norm]:
    """``{layer: batch norm}`` for every batch norm that is the only user of a
    convolution / linear layer's output."""
    gm = trace(model)
    modules = dict(gm.named_modules())
    out: Dict[nn.Module, Norm] = {}
    for node in gm.graph.nodes:
        if node.op == "call_module" and isinstance(modules[node.target], REGULARIZABLE) \
                and len(node.users) == 1:
            user = next(iter(node.users))
            norm = modules[user.target] if user.op == "call_module" else None
            if isinstance(norm, NORMS):
                out[modules[node.target]] = norm
    return out
