r"""Learned edge weights for any PyG message-passing layer.

Layers that take an ``edge_weight`` (``GCNConv(normalize=False)``,
``GraphConv``, :class:`~graphsparse.graph.GatedGCNConv`) use the learned
weights directly. Layers that do not (``SAGEConv``, ``GINConv``, ``GATConv``
without ``edge_dim``, most user ``MessagePassing`` layers) would silently
ignore them, and the gate would get no gradient; :class:`EdgeWeighted` makes
them use the weights through PyG's message-level edge masks (the mechanism of
its explainers): every message :math:`m_{j \to i}` a layer computes is
multiplied by the learned weight :math:`a_{ij}` before the layer's own
aggregation.
"""
from __future__ import annotations

import inspect
import warnings
from typing import Any, List

from torch import Tensor, nn
from torch_geometric.nn import MessagePassing


def _message_passing(model: nn.Module) -> List[MessagePassing]:
    return [m for m in model.modules() if isinstance(m, MessagePassing)]


def _takes_edge_weight(layer: MessagePassing) -> bool:
    return "edge_weight" in inspect.signature(layer.forward).parameters


class EdgeWeighted(nn.Module):
    r"""Wraps a PyG model (or a single layer) so that every message-passing
    layer inside multiplies each message by the learned weight of its edge:

    .. math::
        \mathbf{x}'_i = \mathrm{update}\Big(\mathbf{x}_i,\;
        \mathrm{AGG}_{j \in \mathcal{N}(i)}\; a_{ij}\, \phi(\mathbf{x}_i, \mathbf{x}_j)\Big)

    where :math:`\phi` and :math:`\mathrm{AGG}` are the layer's own message and
    aggregation. The gradient reaches :math:`a` (and so the gate). Use
    ``aggr="add"`` (e.g. ``SAGEConv(..., aggr="add")``, ``GINConv``) with
    row-normalized learned weights to get the learned weighted mean; a
    ``"mean"`` aggregation divides the weighted messages by the degree again.
    Self-loops that a layer adds itself (``GATConv``) carry weight one; the
    learned self-loop weights are then not used by that layer.

    The messages are materialized (``[E, C]`` per layer, as PyG's explainers
    do): for GCN-type layers prefer a layer that takes ``edge_weight``
    directly (``GatedGCNConv`` uses a sparse product).

    Args:
        model (nn.Module): a PyG model or layer called as
            ``model(x, edge_index, *args, **kwargs)``.

    Shapes:
        - **input:** ``x`` ``[N, F]``, ``edge_index`` ``[2, E]``, ``edge_weight`` ``[E]``
        - **output:** whatever ``model`` returns
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        name = self.__class__.__name__
        if not isinstance(model, nn.Module):
            raise ValueError(f"'{name}' expects 'model' to be an nn.Module "
                             f"(got {type(model).__name__})")
        layers = _message_passing(model)
        if not layers:
            raise ValueError(f"'{name}' found no torch_geometric MessagePassing layer in "
                             f"'model': it would not use the weights")
        check_weight_consumers(model, wrapped=True)
        self.model = model

    def reset_parameters(self) -> None:
        for m in self.model.modules():
            reset = getattr(m, "reset_parameters", None)
            if m is not self.model and callable(reset):
                reset()

    def forward(self, x: Any, edge_index: Tensor, edge_weight: Tensor, *args: Any,
                **kwargs: Any) -> Any:
        if edge_weight.dim() != 1 or edge_weight.numel() != edge_index.size(1):
            raise ValueError(f"'{self.__class__.__name__}' expects 'edge_weight' of shape "
                             f"[E] = [{edge_index.size(1)}] (got {tuple(edge_weight.shape)})")
        layers = _message_passing(self.model)
        saved = [(m.explain, m._edge_mask, m._loop_mask, m._apply_sigmoid) for m in layers]
        loop_mask = edge_index[0] != edge_index[1]
        for m in layers:
            m.explain = True
            m._edge_mask = edge_weight
            m._loop_mask = loop_mask
            m._apply_sigmoid = False
        try:
            return self.model(x, edge_index, *args, **kwargs)
        finally:
            for m, (explain, mask, loops, sigmoid) in zip(layers, saved, strict=True):
                m.explain, m._edge_mask, m._loop_mask, m._apply_sigmoid = \
                    explain, mask, loops, sigmoid


def check_weight_consumers(model: nn.Module, wrapped: bool = False) -> None:
    """Refuses, or warns about, layers that would misuse learned edge weights.

    * ``GCNConv(cached=True)``: ``ValueError`` (it keeps the first step's
      normalized graph while the learned weights change every step; pass
      ``cached=False``);
    * ``GCNConv(normalize=True)``: a warning (it renormalizes the learned
      weights, :math:`D^{-1/2}(A+I)D^{-1/2}` of them, and adds self-loops:
      the adjacency's own normalization is lost; pass ``normalize=False``);
    * a layer whose ``forward`` takes no ``edge_weight`` (``SAGEConv``,
      ``GINConv``, ``GATConv``, ...), unless ``wrapped``: ``ValueError``
      naming :class:`EdgeWeighted`, since the weights, and so the gate's
      gradient, would be ignored.
    """
    from torch_geometric.nn import GCNConv
    for name, layer in model.named_modules():
        if not isinstance(layer, MessagePassing):
            continue
        label = f"{type(layer).__name__} '{name or 'model'}'"
        if isinstance(layer, GCNConv):
            if layer.cached:
                raise ValueError(
                    f"{label} has cached=True: it would keep the first step's normalized graph "
                    f"while the learned weights change every step; build it with cached=False")
            if layer.normalize:
                warnings.warn(
                    f"{label} has normalize=True: it renormalizes the learned weights "
                    f"(D^-1/2 (A+I) D^-1/2 of them, self-loops added), so the adjacency's own "
                    f"normalization is lost; build it with normalize=False", stacklevel=3)
        elif not wrapped and not _takes_edge_weight(layer):
            raise ValueError(
                f"{label} takes no 'edge_weight': it would ignore the learned weights and the "
                f"gate would get no gradient; wrap the model, EdgeWeighted(model), to multiply "
                f"its messages by them")
