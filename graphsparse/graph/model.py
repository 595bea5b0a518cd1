"""GCNs whose layers share one learned sparse adjacency (paper, Fig. 3): the
plain GCN and its residual form."""
from __future__ import annotations

from typing import Iterator, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..utils.validation import check_positive_int
from ._ops import sparse_linear
from .adjacency import GatedAdjacency
from .conv import GatedGCNConv
from .features import dropout_recompute, relu_dropout


class GatedGCN(nn.Module):
    r"""The GCN of Kipf & Welling, :math:`H^{l+1} = \mathrm{relu}(A H^l W^l)`,
    with one adjacency :math:`A` learned by a
    :class:`~graphsparse.graph.GatedAdjacency` and shared by every layer
    (paper, section "GCN", Fig. 3).

    ``model(x)`` evaluates the adjacency once, keeps its surviving edges and
    passes them to every :class:`~graphsparse.graph.GatedGCNConv`; it returns
    the logits. ``model(x, edge_index, edge_weight)`` instead uses weights
    computed outside (e.g. ``edge_index, edge_weight = adj()`` in your own
    loop, or a :class:`~graphsparse.structure.StructureLearner`), as any PyG
    model would; without an ``adjacency`` this is the only form. Train it on

    .. math::
        \mathcal{L}(D, W, A) + \lambda \sum_i \mathcal{R}(A_{i,:}) + \mathcal{R}(A_{:,i})

    with ``model.penalty(p)`` as the regularizer (it reuses the weights of the
    forward pass), and usually a separate optimizer (or learning rate) for
    ``model.gate_parameters()`` and ``model.weight_parameters()``.

    On a mini-batch of the adjacency's graph (a PyG loader's batch),
    ``model(batch.x, batch.edge_index, e_id=batch.e_id, n_id=batch.n_id)``
    gates the batch's edges (:meth:`GatedAdjacency.subgraph`); wrapped in
    ``DistributedDataParallel`` the gates train on every process's batches.

    With a scorer in the adjacency, ``model(x, edge_index)`` runs on another
    graph (unseen nodes and edges): the scorer gates the candidates of
    ``edge_index`` from ``x``. With free logits the model is tied to the
    adjacency's candidate edges and ``edge_index`` must be omitted.

    The adjacency is given, not owned: construction and
    :meth:`reset_parameters` leave its (possibly trained) gates alone;
    reset it with ``model.adjacency.reset_parameters()``.

    Args:
        in_channels (int): size of the node features.
        hidden_channels (int): size of the hidden layers.
        out_channels (int): number of classes.
        num_layers (int): number of graph convolutions (keyword-only, so that
            PyG's positional order ``(in, hidden, num_layers, out)`` fails
            loudly instead of building another model). (default: ``2``)
        dropout (float): dropout before every convolution. (default: ``0.5``)
        adjacency (GatedAdjacency, optional): the learned adjacency.

    Shapes:
        - **input:** ``x`` ``[N, in_channels]``, optional ``edge_index`` ``[2, E]``
          and ``edge_weight`` ``[E]``
        - **output:** logits ``[N, out_channels]``
    """

    def __init__(self, in_channels: int, hidden_channels: int, out_channels: int, *,
                 num_layers: int = 2, dropout: float = 0.5,
                 adjacency: Optional[GatedAdjacency] = None) -> None:
        super().__init__()
        name = self.__class__.__name__
        if adjacency is not None and not isinstance(adjacency, GatedAdjacency):
            raise ValueError(f"'{name}' expects 'adjacency' to be a GatedAdjacency or None "
                             f"(got {type(adjacency).__name__})")
        self.in_channels = check_positive_int(in_channels, "in_channels", name)
        self.hidden_channels = check_positive_int(hidden_channels, "hidden_channels", name)
        self.out_channels = check_positive_int(out_channels, "out_channels", name)
        self.num_layers = check_positive_int(num_layers, "num_layers", name)
        if (isinstance(dropout, bool) or not isinstance(dropout, (int, float))
                or not 0.0 <= dropout < 1.0):
            raise ValueError(f"'{name}' expects 'dropout' in [0, 1) (got {dropout!r})")
        self.dropout = float(dropout)
        self.adjacency = adjacency
        sizes = [in_channels] + [hidden_channels] * (num_layers - 1) + [out_channels]
        self.convs = nn.ModuleList(
            GatedGCNConv(a, b) for a, b in zip(sizes[:-1], sizes[1:], strict=True))
        self._last_input: Tuple[Optional[Tensor], Optional[Tensor]] = (None, None)

    def reset_parameters(self) -> None:
        """Resets the convolutions (what the model owns), not the given adjacency."""
        for conv in self.convs:
            assert isinstance(conv, GatedGCNConv)
            conv.reset_parameters()

    def forward(self, x: Tensor, edge_index: Optional[Tensor] = None,
                edge_weight: Optional[Tensor] = None, *, e_id: Optional[Tensor] = None,
                n_id: Optional[Tensor] = None) -> Tensor:
        if e_id is not None or n_id is not None:    # a mini-batch of the adjacency's graph
            if edge_index is None or e_id is None or n_id is None or edge_weight is not None:
                raise ValueError(f"'{self.__class__.__name__}' on a mini-batch takes the "
                                 f"batch's 'edge_index', 'e_id' and 'n_id' (no 'edge_weight')")
            edge_index, edge_weight = self._require_adjacency().subgraph(edge_index, e_id, n_id,
                                                                         x)
        elif edge_weight is None:
            if self.adjacency is None:
                raise ValueError(f"'{self.__class__.__name__}' without an 'adjacency' needs "
                                 f"'edge_index' and 'edge_weight' (e.g. from adj())")
            if self.adjacency.scorer is not None:
                self._last_input = (x, edge_index)
            edge_index, edge_weight = self.adjacency(x, edge_index, zeros="auto")
        elif edge_index is None:
            raise ValueError(f"'{self.__class__.__name__}' got 'edge_weight' without "
                             f"'edge_index'")
        return self._layers(x, edge_index, edge_weight)

    def _layers(self, x: Tensor, edge_index: Tensor, edge_weight: Tensor) -> Tensor:
        p, training = self.dropout, self.training
        first = self.convs[0]
        # input dropout (O(nnz) on sparse x), kept for backward as x and a mask
        x = dropout_recompute(lambda d: first(d, edge_index, edge_weight), x, p, training)
        for conv in self.convs[1:]:
            # relu and dropout over the previous layer's fresh output, one
            # boolean mask saved
            x = conv(relu_dropout(x, p, training, inplace=True), edge_index, edge_weight)
        return x

    def penalty(self, p: float = 0.5, x: Optional[Tensor] = None,
                edge_index: Optional[Tensor] = None, *, reduction: str = "sum") -> Tensor:
        """The adjacency's penalty (see :meth:`GatedAdjacency.penalty`). With a
        scorer and no ``x``, it is evaluated on the input (``x`` and
        ``edge_index``) of the last forward pass."""
        adjacency = self._require_adjacency()
        if x is None and adjacency.scorer is not None:
            x, edge_index = self._last_input
        return adjacency.penalty(p, x, edge_index, reduction=reduction)

    def _require_adjacency(self) -> GatedAdjacency:
        if self.adjacency is None:
            raise ValueError(f"'{self.__class__.__name__}' has no 'adjacency'; call the "
                             f"adjacency's own methods")
        return self.adjacency

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_last_input"] = (None, None)
        return state

    def gate_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of the adjacency (logits or scorer, thresholds)."""
        return self._require_adjacency().gate_parameters()

    def weight_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of the layers (everything but the adjacency)."""
        adjacency = set(map(id, self.adjacency.parameters())) if self.adjacency else set()
        return (p for p in self.parameters() if id(p) not in adjacency)

    def extra_repr(self) -> str:
        return f"num_layers={self.num_layers}, dropout={self.dropout}"


class GatedResGCN(GatedGCN):
    r"""The residual GCN of Platonov et al. (ICLR 2023, Section 4.1) on a learned
    adjacency: an input map, ``num_layers`` residual blocks that share the
    adjacency :math:`A`, and an output map,

    .. math::
        H^0 = \mathrm{GELU}(\mathrm{Drop}(X W_{in})), \qquad
        H^{l+1} = H^l + \mathrm{Drop}\big(\mathrm{Drop}(\mathrm{GELU}(
            A\,\mathrm{LN}(H^l)\, W^l_1))\, W^l_2\big), \qquad
        Y = \mathrm{LN}(H^L)\, W_{out}.

    The skip path carries every node's own representation past the
    aggregation, so the graph can only add to what the node's features say:
    with always-on self-loops and row normalization, a node whose neighbours
    are all gated to zero has :math:`(A Z)_i = Z_i`, and its output is exactly
    that of the same network without a graph (an MLP with residual blocks).
    This is the architecture that wins on heterophilous graphs (Platonov et
    al.: a GCN with residual connections beats every graph-specific model they
    test on minesweeper and tolokers). Everything else (mini-batches, a
    scorer, the penalty, ``edge_weight`` from outside) is as in
    :class:`GatedGCN`.

    Args:
        in_channels (int): size of the node features.
        hidden_channels (int): width of the residual stream.
        out_channels (int): number of classes.
        num_layers (int): number of residual blocks. (default: ``2``)
        dropout (float): dropout inside the blocks and after the input map.
            (default: ``0.2``, Platonov et al.)
        adjacency (GatedAdjacency, optional): the learned adjacency.

    Shapes:
        - **input:** ``x`` ``[N, in_channels]``, optional ``edge_index`` ``[2, E]``
          and ``edge_weight`` ``[E]``
        - **output:** logits ``[N, out_channels]``
    """

    def __init__(self, in_channels: int, hidden_channels: int, out_channels: int, *,
                 num_layers: int = 2, dropout: float = 0.2,
                 adjacency: Optional[GatedAdjacency] = None) -> None:
        super().__init__(in_channels, hidden_channels, out_channels, num_layers=num_layers,
                         dropout=dropout, adjacency=adjacency)
        h = hidden_channels
        self.convs = nn.ModuleList(GatedGCNConv(h, h) for _ in range(num_layers))
        self.inp = nn.Linear(in_channels, h)
        self.norms = nn.ModuleList(nn.LayerNorm(h) for _ in range(num_layers))
        self.lin2 = nn.ModuleList(nn.Linear(h, h) for _ in range(num_layers))
        self.out_norm = nn.LayerNorm(h)
        self.out = nn.Linear(h, out_channels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Resets the layers (what the model owns), not the given adjacency."""
        super().reset_parameters()
        for m in (self.inp, self.out_norm, self.out, *self.norms, *self.lin2):
            m.reset_parameters()

    def _layers(self, x: Tensor, edge_index: Tensor, edge_weight: Tensor) -> Tensor:
        p, training = self.dropout, self.training
        # sparse CSR features: a linear map whose weight gradient reuses one
        # transposed pattern (sparse_linear)
        h = self.inp(x) if x.layout == torch.strided else sparse_linear(x, self.inp.weight,
                                                                       self.inp.bias)
        h = F.gelu(F.dropout(h, p, training))
        for conv, norm, lin2 in zip(self.convs, self.norms, self.lin2, strict=True):
            z = F.dropout(F.gelu(conv(norm(h), edge_index, edge_weight)), p, training)
            h = h + F.dropout(lin2(z), p, training)
        return self.out(self.out_norm(h))
