"""Edge scorers: gate logits computed from the endpoints' features, an
inductive alternative to one free logit per candidate edge."""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch_geometric.nn.dense.linear import Linear

from ..utils.validation import check_choice, check_positive_int
from ._ops import edge_dot

KINDS = ("dot", "mlp")


class EdgeScorer(nn.Module):
    r"""Gate logit :math:`\alpha_{ij}` of every edge from the features of its
    two endpoints, through a shared node projection :math:`h = W x`:

    * ``kind="dot"``: a scaled dot product,
      :math:`\alpha_{ij} = s \, \langle h_i, h_j \rangle / \sqrt{d} + b`;
    * ``kind="mlp"``: a small MLP on symmetric combinations,
      :math:`\alpha_{ij} = w^\top \mathrm{relu}([h_i + h_j \,\|\, h_i \odot h_j]) + b`.

    Both are symmetric in :math:`i, j`. The output scale (:math:`s`, resp.
    :math:`w`) and :math:`b` start at zero, so every logit starts at
    :math:`\alpha = 0`, the paper's initialization; the projection starts
    receiving gradient after the first update. The number of parameters does
    not depend on the graph, and the scorer applies to unseen nodes and edges.

    Args:
        in_channels (int): size of the node features.
        hidden_channels (int): size of the projection :math:`d`. (default: ``64``)
        kind (str): ``"dot"`` or ``"mlp"``. (default: ``"dot"``)

    Shapes:
        - **input:** node features ``[N, in_channels]``, edge indices ``[2, E]``
        - **output:** logits ``[E]``
    """

    def __init__(self, in_channels: int, hidden_channels: int = 64, kind: str = "dot") -> None:
        super().__init__()
        name = self.__class__.__name__
        self.in_channels = check_positive_int(in_channels, "in_channels", name)
        self.hidden_channels = check_positive_int(hidden_channels, "hidden_channels", name)
        check_choice(kind, KINDS, "kind", name)
        self.kind = kind
        self.lin = Linear(in_channels, hidden_channels, bias=False, weight_initializer="glorot")
        if kind == "dot":
            self.scale = nn.Parameter(torch.empty(()))
        else:
            self.out = nn.Parameter(torch.empty(2 * hidden_channels))
        self.bias = nn.Parameter(torch.empty(()))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.lin.reset_parameters()
        with torch.no_grad():
            self.bias.zero_()
            (self.scale if self.kind == "dot" else self.out).zero_()

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        if x.dim() != 2 or x.size(-1) != self.in_channels:
            raise ValueError(
                f"'{self.__class__.__name__}' expects 'x' of shape [N, {self.in_channels}] "
                f"(got {tuple(x.shape)})")
        h = self.lin(x)
        if self.kind == "dot":    # an SDDMM: no [E, d] gathers
            score = edge_dot(h, h, edge_index) * (self.scale / math.sqrt(self.hidden_channels))
        else:
            h_i, h_j = h.index_select(0, edge_index[1]), h.index_select(0, edge_index[0])
            score = torch.relu(torch.cat([h_i + h_j, h_i * h_j], dim=-1)) @ self.out
        return score + self.bias

    def extra_repr(self) -> str:
        return f"{self.in_channels}, hidden_channels={self.hidden_channels}, kind={self.kind!r}"
