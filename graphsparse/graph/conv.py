"""The graph convolution of :class:`~graphsparse.graph.GatedGCN`."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn
from torch.nn.modules import module as _module_hooks
from torch_geometric.nn import MessagePassing
from torch_geometric.nn.dense.linear import Linear

from ..utils.validation import check_positive_int
from ._ops import linear_aggregate


class GatedGCNConv(MessagePassing):
    r"""A graph convolution :math:`X' = A X W + b` (Kipf & Welling,
    https://arxiv.org/abs/1609.02907) whose adjacency :math:`A` is given as
    **already normalized** edge weights, e.g. the output of
    :class:`~graphsparse.graph.GatedAdjacency`: unlike PyG's ``GCNConv`` it
    adds no self-loops and does not re-normalize.

    The sum is a CSR sparse-matrix product
    (:func:`~graphsparse.graph._ops.linear_aggregate`: no ``[E, C]``
    message tensor forward or backward, memory :math:`O(E + N C)`), with or
    without weights and whether or not they require a gradient; for learned
    weights the backward pass recomputes :math:`X W` instead of keeping it
    (the linear layer's input :math:`X` is kept anyway). PyG's
    ``propagate`` (which materializes the ``[E, C]`` messages) is used only
    where the product is not the same computation: when PyG hooks or an
    explainer are attached (they read or edit the per-edge messages), for
    another ``aggr`` than ``"add"`` or ``flow="target_to_source"``, and for
    an ``edge_index`` that is a sparse tensor (``propagate`` handles those
    layouts itself).

    .. math::
        \mathbf{x}'_i = \sum_{(j, i) \in \mathcal{E}} a_{ij}\, W \mathbf{x}_j + b

    Args:
        in_channels (int): size of each input sample.
        out_channels (int): size of each output sample.
        bias (bool): learn an additive bias. (default: ``True``)
        **kwargs: passed to :class:`torch_geometric.nn.conv.MessagePassing`.

    Shapes:
        - **input:** node features ``[N, in_channels]``, edge indices ``[2, E]``,
          edge weights ``[E]`` (optional, default ones)
        - **output:** node features ``[N, out_channels]``
    """

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True, **kwargs) -> None:
        kwargs.setdefault("aggr", "add")
        super().__init__(**kwargs)
        name = self.__class__.__name__
        self.in_channels = check_positive_int(in_channels, "in_channels", name)
        self.out_channels = check_positive_int(out_channels, "out_channels", name)
        self.lin = Linear(in_channels, out_channels, bias=False, weight_initializer="glorot")
        if bias:
            self.bias = nn.Parameter(torch.empty(out_channels))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        self.lin.reset_parameters()
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def forward(self, x: Tensor, edge_index: Tensor,
                edge_weight: Optional[Tensor] = None) -> Tensor:
        if self._product_applies(edge_index) and not self._lin_hooks_active():
            if edge_weight is None:
                edge_weight = x.new_ones(edge_index.size(1))
            out = linear_aggregate(x, self.lin.weight, edge_index, edge_weight)
        else:
            out = self.propagate(edge_index, x=self.lin(x), edge_weight=edge_weight)
        return out if self.bias is None else out + self.bias

    def _product_applies(self, edge_index) -> bool:
        # The sparse product computes exactly propagate()'s sum of w * x_j.
        return (isinstance(edge_index, Tensor) and edge_index.layout == torch.strided
                and edge_index.dim() == 2 and self.aggr in ("add", "sum")
                and self.flow == "source_to_target" and not self._hooks_active())

    def _lin_hooks_active(self) -> bool:
        # the fused product bypasses self.lin's __call__ (and so its hooks)
        m = _module_hooks
        return bool(self.lin._forward_hooks or self.lin._forward_pre_hooks
                    or self.lin._backward_hooks or self.lin._backward_pre_hooks
                    or m._global_forward_hooks or m._global_forward_pre_hooks
                    or m._global_backward_hooks or m._global_backward_pre_hooks)

    def _hooks_active(self) -> bool:
        # PyG's propagate/message/aggregate hooks and explainers need propagate().
        hooks = ("_propagate_forward_pre_hooks", "_propagate_forward_hooks",
                 "_message_forward_pre_hooks", "_message_forward_hooks",
                 "_aggregate_forward_pre_hooks", "_aggregate_forward_hooks")
        return any(getattr(self, h, None) for h in hooks) or bool(getattr(self, "_explain", False))

    def message(self, x_j: Tensor, edge_weight: Optional[Tensor]) -> Tensor:
        return x_j if edge_weight is None else edge_weight.view(-1, 1) * x_j

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.in_channels}, {self.out_channels})"
