"""Decoupled propagation on a learned adjacency: DAGNN (Liu, Gao & Ji, KDD
2020), whose many hops on one shared adjacency make every gated edge count
``num_hops`` times."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..utils.validation import check_positive_int
from ._ops import propagate_hops, sparse_linear
from .adjacency import GatedAdjacency
from .features import feature_dropout
from .model import GatedGCN


class GatedDAGNN(GatedGCN):
    r"""DAGNN ("Towards Deeper Graph Neural Networks", Liu, Gao & Ji, KDD
    2020) on a learned adjacency :math:`A`: an MLP that ignores the graph,
    ``num_hops`` propagations of its output over :math:`A`, and a learned,
    per-node weighting of the hops,

    .. math::
        Z = \mathrm{MLP}(X), \qquad H_k = A^k Z \;(k = 0, \dots, K), \qquad
        s_{ik} = \sigma(\mathbf{h}_{ik}^\top \mathbf{q}), \qquad
        \mathbf{y}_i = \textstyle\sum_{k=0}^{K} s_{ik}\, \mathbf{h}_{ik},

    with :math:`\mathbf{q} \in \mathbb{R}^{C}` learned. Hop 0 is the node's
    own MLP output, so every node can ignore the graph (:math:`s_{ik} \to 0`
    for :math:`k \ge 1`), and with every neighbour gated to zero under row
    or sym normalization (self-loops always on) :math:`H_k = Z` for all
    :math:`k`: the output is the MLP's up to the hop weights. Propagation
    runs on ``out_channels`` (the classes) only, as a CSR product per hop
    (:func:`~graphsparse.graph._ops.propagate_hops`): memory
    :math:`O(E + N K C)`, and the gates' gradient sums over all :math:`K`
    hops. Everything else (mini-batches, a scorer, the penalty,
    ``edge_weight`` from outside) is as in :class:`GatedGCN`.

    Args:
        in_channels (int): size of the node features.
        hidden_channels (int): width of the MLP's hidden layers.
        out_channels (int): number of classes.
        num_layers (int): layers of the MLP. (default: ``2``, DAGNN's)
        num_hops (int): propagation steps :math:`K`. (default: ``10``, DAGNN's)
        dropout (float): dropout before every linear layer of the MLP.
            (default: ``0.5``)
        adjacency (GatedAdjacency, optional): the learned adjacency.

    Shapes:
        - **input:** ``x`` ``[N, in_channels]`` (dense or sparse CSR),
          optional ``edge_index`` ``[2, E]`` and ``edge_weight`` ``[E]``
        - **output:** logits ``[N, out_channels]``
    """

    def __init__(self, in_channels: int, hidden_channels: int, out_channels: int, *,
                 num_layers: int = 2, num_hops: int = 10, dropout: float = 0.5,
                 adjacency: Optional[GatedAdjacency] = None) -> None:
        super().__init__(in_channels, hidden_channels, out_channels, num_layers=num_layers,
                         dropout=dropout, adjacency=adjacency)
        self.num_hops = check_positive_int(num_hops, "num_hops", self.__class__.__name__)
        sizes = [in_channels] + [hidden_channels] * (num_layers - 1) + [out_channels]
        self.convs = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:],
                                                                    strict=True))
        self.hop_score = nn.Linear(out_channels, 1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Resets the MLP and the hop scorer, not the given adjacency."""
        for lin in self.convs:
            assert isinstance(lin, nn.Linear)
            lin.reset_parameters()
        self.hop_score.reset_parameters()

    def _layers(self, x: Tensor, edge_index: Tensor, edge_weight: Tensor) -> Tensor:
        p, training = self.dropout, self.training
        h = x
        for i, lin in enumerate(self.convs):
            assert isinstance(lin, nn.Linear)
            h = feature_dropout(h, p, training)      # O(nnz) on sparse CSR features
            h = lin(h) if h.layout == torch.strided else sparse_linear(h, lin.weight, lin.bias)
            if i < len(self.convs) - 1:
                h = F.relu(h)
        hops = propagate_hops(h, edge_index, edge_weight, self.num_hops)   # [K + 1, N, C]
        score = torch.sigmoid(self.hop_score(hops))                         # [K + 1, N, 1]
        return (score * hops).sum(dim=0)

    def hop_weights(self, x: Tensor, edge_index: Optional[Tensor] = None,
                    edge_weight: Optional[Tensor] = None) -> Tensor:
        """The learned weight :math:`s_{ik}` of every node and hop, ``[N, K + 1]``
        (hop 0: the node's own MLP output), in evaluation mode."""
        modes = {m: m.training for m in self.modules()}    # the adjacency's own too
        self.eval()
        scores = []
        handle = self.hop_score.register_forward_hook(
            lambda m, i, o: scores.append(torch.sigmoid(o.detach())))
        try:
            with torch.no_grad():
                self(x, edge_index, edge_weight)
        finally:
            handle.remove()
            for m, mode in modes.items():
                m.training = mode
        return scores[-1].squeeze(-1).t()

    def extra_repr(self) -> str:
        return f"num_layers={self.num_layers}, num_hops={self.num_hops}, dropout={self.dropout}"
