"""Seeded corruption of a graph's edges, to test recovery from noisy structure."""
from __future__ import annotations

from typing import Tuple

import torch
from torch import Tensor

from ..utils.validation import check_index


def _undirected_pairs(edge_index: Tensor) -> Tensor:
    """Unique pairs (i < j) of an edge list, self-loops removed: ``[2, M]``."""
    row, col = edge_index
    lo, hi = torch.minimum(row, col), torch.maximum(row, col)
    keep = lo != hi
    return torch.unique(torch.stack([lo[keep], hi[keep]]), dim=1)


def corrupt_edges(edge_index: Tensor, num_nodes: int, add: float = 0.0, drop: float = 0.0,
                  seed: int = 0) -> Tuple[Tensor, Tensor]:
    r"""Adds random edges and drops existing ones, treating the graph as undirected.

    With :math:`M` undirected edges, ``round(drop * M)`` of them are removed
    and ``round(add * M)`` new node pairs, absent from the original graph and
    not self-loops, are added (uniformly at random). Every undirected edge is
    returned in both directions.

    Args:
        edge_index (LongTensor): ``[2, E]`` original edges.
        num_nodes (int): number of nodes ``N``.
        add (float): added edges, as a fraction of the original count (``1.0``
            doubles the graph). (default: ``0.0``)
        drop (float): fraction of the original edges removed, in ``[0, 1]``.
        seed (int): the corruption is a function of the seed alone.

    Returns:
        ``(edge_index, is_added)``: the corrupted ``[2, E']`` edges and a boolean
        ``[E']`` mask of the added ones.
    """
    if edge_index.dim() != 2 or edge_index.size(0) != 2:
        raise ValueError(f"'edge_index' must have shape [2, E] (got {tuple(edge_index.shape)})")
    check_index(edge_index.reshape(-1), num_nodes, "edge_index")
    if not 0.0 <= drop <= 1.0:
        raise ValueError(f"'drop' must be a fraction in [0, 1] (got {drop})")
    if add < 0:
        raise ValueError(f"'add' must be non-negative (got {add})")
    device = edge_index.device
    g = torch.Generator().manual_seed(seed)
    original = _undirected_pairs(edge_index.cpu())
    pairs, m = original, original.size(1)
    n_drop = int(round(drop * m))
    keep = torch.randperm(m, generator=g)[n_drop:].sort().values
    pairs = pairs[:, keep]

    n_add = int(round(add * m))
    max_pairs = num_nodes * (num_nodes - 1) // 2
    if n_add > max_pairs - m:
        raise ValueError(f"'add' = {add} asks for {n_add} new edges but only "
                         f"{max_pairs - m} node pairs are free")
    # pairs are coded as lo * N + hi; dropped edges are not re-added as "new" ones
    taken = original[0] * num_nodes + original[1]
    new_codes = torch.empty(0, dtype=torch.long)
    while new_codes.numel() < n_add:
        k = 2 * (n_add - new_codes.numel()) + 16
        cand = torch.randint(0, num_nodes, (2, k), generator=g)
        lo, hi = cand.min(0).values, cand.max(0).values
        code = (lo * num_nodes + hi)[lo != hi]
        code = code[~torch.isin(code, taken)]
        # the first occurrence of every pair, in the order drawn
        uniq, inverse = torch.unique(code, return_inverse=True)
        first = torch.full((uniq.numel(),), code.numel()).scatter_reduce(
            0, inverse, torch.arange(code.numel()), reduce="amin")
        code = code[first.sort().values][: n_add - new_codes.numel()]
        taken = torch.cat([taken, code])
        new_codes = torch.cat([new_codes, code])
    new = torch.stack([new_codes // num_nodes, new_codes % num_nodes])
    both = torch.cat([pairs, new], 1)
    is_added = torch.cat([torch.zeros(pairs.size(1), dtype=torch.bool),
                          torch.ones(new.size(1), dtype=torch.bool)])
    out = torch.cat([both, both.flip(0)], 1)
    return out.to(device), torch.cat([is_added, is_added]).to(device)
