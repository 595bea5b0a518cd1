"""The graph formats a :class:`~graphsparse.graph.GatedAdjacency` accepts, and
the candidate edges it builds from them, aligned with the input edges."""
from __future__ import annotations

from typing import NamedTuple, Optional, Tuple

import torch
from torch import Tensor
from torch_geometric.utils import add_remaining_self_loops, coalesce

from ..core import init_beta
from ._validate import check_edge_index, check_edge_weight


def as_edge_list(edge_index, edge_weight: Optional[Tensor], num_nodes: Optional[int],
                 owner: str) -> Tuple[Tensor, Optional[Tensor], Optional[int]]:
    """``(edge_index, edge_weight, num_nodes)`` as a plain ``[2, E]`` long
    tensor and an optional ``[E]`` weight, from any of

    * an ``edge_index`` tensor (PyG's :class:`~torch_geometric.EdgeIndex` included);
    * a ``torch.sparse`` COO / CSR / CSC matrix or a ``torch_sparse.SparseTensor``
      ``S`` with ``S[j, i]`` the weight of the edge ``j -> i``, the layout of
      :func:`torch_geometric.utils.to_torch_coo_tensor` and
      ``SparseTensor.from_edge_index`` (its values become ``edge_weight``).

    Multi-dimensional edge features are refused: the gate learns one weight per
    edge. Gather them for the surviving edges with the ids that
    :meth:`GatedAdjacency.forward` returns (``return_edge_id=True``) instead.
    """
    where = f"'{owner}' "
    if type(edge_index).__name__ == "SparseTensor":        # torch_sparse, without importing it
        row, col, value = edge_index.coo()
        if edge_weight is not None:
            raise ValueError(f"{where}got a SparseTensor and an 'edge_weight': the "
                             f"SparseTensor's values are the edge weights; pass one of them")
        num_nodes = num_nodes if num_nodes is not None else int(max(edge_index.sizes()))
        return torch.stack([row, col]), value, num_nodes
    if isinstance(edge_index, Tensor) and edge_index.layout != torch.strided:
        if edge_weight is not None:
            raise ValueError(f"{where}got a torch.sparse matrix and an 'edge_weight': the "
                             f"matrix's values are the edge weights; pass one of them")
        coo = edge_index.to_sparse_coo().coalesce()
        num_nodes = num_nodes if num_nodes is not None else int(max(coo.shape))
        values = coo.values()
        if values.dim() != 1:
            raise ValueError(f"{where}expects a sparse matrix with scalar values "
                             f"(got values of shape {tuple(values.shape)})")
        return coo.indices(), values, num_nodes
    if isinstance(edge_index, Tensor) and type(edge_index) is not Tensor:
        # PyG's EdgeIndex (and other subclasses): the plain index tensor
        as_tensor = getattr(edge_index, "as_tensor", None)
        edge_index = as_tensor() if callable(as_tensor) else edge_index.as_subclass(Tensor)
    if edge_weight is not None and isinstance(edge_weight, Tensor) and edge_weight.dim() > 1:
        raise ValueError(
            f"{where}expects 'edge_weight' of shape [E] (got {tuple(edge_weight.shape)}): "
            f"multi-dimensional edge features (edge_attr) are not gated. Pass them to your "
            f"layers for the surviving edges, gathered with the edge ids of "
            f"adj(return_edge_id=True) and adj.input_id")
    return edge_index, edge_weight, num_nodes


class Candidates(NamedTuple):
    """The candidate edges of one graph and what the gate needs about them."""
    edge_index: Tensor            # [2, E], coalesced (sorted by source, then target)
    num_nodes: int
    beta0_row: Tensor             # [N] init_beta of the in-degrees (row group sizes)
    beta0_col: Tensor             # [N] init_beta of the out-degrees (column group sizes)
    pair: Optional[Tensor]        # [E] undirected pair of each edge (symmetric only)
    pair_rep: Optional[Tensor]    # [P] one edge of each pair (symmetric only)
    weight: Optional[Tensor]      # [E] input strengths (None: all ones)
    input_to_cand: Tensor         # [E_in] candidate of every input edge (int32 below 2^31)
    input_id: Tensor              # [E] first input position of every candidate, -1 if none
    cand_id: Optional[Tensor] = None   # [E_b] a batch's candidates: ids among the stored ones
    node_id: Optional[Tensor] = None   # [N_b] a batch's nodes: their global ids

    @property
    def row(self) -> Tensor:
        return self.edge_index[1]

    @property
    def col(self) -> Tensor:
        return self.edge_index[0]


def first_of_each(group: Tensor) -> Tensor:
    """``[G]`` the first position of every group ``0..G-1`` in ``group`` ``[E]``."""
    num = int(group.max()) + 1 if group.numel() > 0 else 0
    pos = torch.arange(group.numel(), device=group.device)
    first = torch.full((num,), group.numel(), dtype=torch.long, device=group.device)
    return first.scatter_reduce(0, group, pos, reduce="amin")


def build_candidates(edge_index: Tensor, edge_weight: Optional[Tensor], num_nodes: Optional[int],
                     add_self_loops: bool, symmetric: bool, gate_self_loops: bool,
                     owner: str, extra: Optional[Tensor] = None) -> Candidates:
    """Coalesces the input edges into candidates (duplicate edges merged, their
    weights summed; ``extra``: more candidate edges, weight one, those already
    in the input merged into them; ``symmetric``: both directions, the larger
    weight; ``add_self_loops``: the missing self-loops with weight one) and
    records where every input edge went."""
    num_nodes = check_edge_index(edge_index, num_nodes, owner)
    ei_in = edge_index.long()
    w_in = None
    if edge_weight is not None:
        w_in = check_edge_weight(edge_weight, ei_in.size(1), owner)
    ei, w = coalesce(ei_in, w_in, num_nodes=num_nodes, reduce="sum")
    if extra is not None:
        if not isinstance(extra, Tensor) or extra.dim() != 2 or extra.size(0) != 2:
            raise ValueError(f"'{owner}' expects 'candidates' of shape [2, E'] "
                             f"(got {getattr(extra, 'shape', type(extra).__name__)})")
        check_edge_index(extra, num_nodes, owner)
        extra = extra.long().to(ei.device)
        new = ~torch.isin(extra[0] * num_nodes + extra[1], ei[0] * num_nodes + ei[1])
        extra = extra[:, new]
        w = None if w is None else torch.cat([w, w.new_ones(extra.size(1))])
        ei, w = coalesce(torch.cat([ei, extra], 1), w, num_nodes=num_nodes, reduce="max")
    if symmetric:
        both = torch.cat([ei, ei.flip(0)], 1)
        ei, w = coalesce(both, None if w is None else torch.cat([w, w]), num_nodes=num_nodes,
                         reduce="max")
    if add_self_loops:
        ei, w = add_remaining_self_loops(ei, w, fill_value=1.0, num_nodes=num_nodes)
        ei, w = coalesce(ei, w, num_nodes=num_nodes)
    counted = ei if gate_self_loops else ei[:, ei[0] != ei[1]]
    beta0_row = init_beta(torch.bincount(counted[1], minlength=num_nodes))
    beta0_col = init_beta(torch.bincount(counted[0], minlength=num_nodes))
    pair = pair_rep = None
    if symmetric:
        key = torch.minimum(ei[0], ei[1]) * num_nodes + torch.maximum(ei[0], ei[1])
        _, pair = torch.unique(key, return_inverse=True)
        pair_rep = first_of_each(pair)
    # coalesce sorts by source * N + target: every input edge is found by bisection.
    keys = ei[0] * num_nodes + ei[1]
    input_to_cand = torch.searchsorted(keys, ei_in[0] * num_nodes + ei_in[1])
    positions = torch.arange(ei_in.size(1), device=ei.device)
    input_id = torch.full((ei.size(1),), ei_in.size(1), dtype=torch.long, device=ei.device)
    input_id = input_id.scatter_reduce(0, input_to_cand, positions, reduce="amin")
    input_id = torch.where(input_id == ei_in.size(1), torch.full_like(input_id, -1), input_id)
    if max(ei.size(1), ei_in.size(1)) < 2**31:     # 4 bytes per edge each instead of 8
        input_to_cand, input_id = input_to_cand.int(), input_id.int()
    return Candidates(ei, num_nodes, beta0_row, beta0_col, pair, pair_rep, w, input_to_cand,
                      input_id)
