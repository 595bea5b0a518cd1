"""Checks of graph inputs shared by the normalizations and the gated
adjacency. Each raises a ``ValueError`` naming the argument."""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor

from ..utils.validation import check_finite, check_positive_int


def _where(owner: str) -> str:
    return f"'{owner}' " if owner else ""


def check_edge_index(edge_index: Tensor, num_nodes: Optional[int], owner: str = "") -> int:
    """Checks ``edge_index`` (an integer ``[2, E]`` tensor with entries in
    ``[0, num_nodes)``) and returns ``num_nodes`` (inferred as ``max + 1``
    when None)."""
    where = _where(owner)
    if not isinstance(edge_index, Tensor):
        raise ValueError(
            f"{where}expects 'edge_index' to be a torch.Tensor (got {type(edge_index).__name__})")
    if edge_index.dtype not in (torch.long, torch.int32):
        raise ValueError(
            f"{where}expects 'edge_index' of dtype torch.long (got {edge_index.dtype}); "
            f"convert it with 'edge_index.long()'")
    if edge_index.dim() != 2 or edge_index.size(0) != 2:
        raise ValueError(
            f"{where}expects 'edge_index' of shape [2, E] (got {tuple(edge_index.shape)})")
    if num_nodes is not None:
        check_positive_int(num_nodes, "num_nodes", owner, minimum=0)
    if edge_index.numel() == 0:
        return 0 if num_nodes is None else num_nodes
    lo, hi = int(edge_index.min()), int(edge_index.max())
    if lo < 0:
        raise ValueError(f"{where}expects 'edge_index' without negative entries (min {lo})")
    if num_nodes is None:
        return hi + 1
    if hi >= num_nodes:
        raise ValueError(
            f"{where}expects 'edge_index' entries in [0, num_nodes={num_nodes}) (got {hi}); "
            f"pass the right 'num_nodes'")
    return num_nodes


def check_edge_weight(edge_weight: Optional[Tensor], num_edges: int, owner: str = "",
                      like: Optional[Tensor] = None) -> Tensor:
    """Checks ``edge_weight`` (a finite, non-negative floating ``[E]`` tensor);
    ``None`` becomes all ones."""
    where = _where(owner)
    if edge_weight is None:
        device = like.device if like is not None else None
        return torch.ones(num_edges, device=device)
    if not isinstance(edge_weight, Tensor) or not edge_weight.is_floating_point():
        raise ValueError(f"{where}expects 'edge_weight' to be a floating-point tensor")
    if edge_weight.dim() != 1 or edge_weight.numel() != num_edges:
        raise ValueError(
            f"{where}expects 'edge_weight' of shape [E] = [{num_edges}] "
            f"(got {tuple(edge_weight.shape)})")
    check_finite(edge_weight, "edge_weight")
    if num_edges > 0 and bool((edge_weight < 0).any()):
        raise ValueError(f"{where}expects a non-negative 'edge_weight' (got negative entries)")
    return edge_weight


def check_graph(edge_index: Tensor, edge_weight: Optional[Tensor], num_nodes: Optional[int],
                owner: str = "") -> Tuple[Tensor, Tensor, int]:
    """Both checks above; returns ``(edge_index.long(), edge_weight, num_nodes)``."""
    num_nodes = check_edge_index(edge_index, num_nodes, owner)
    edge_weight = check_edge_weight(edge_weight, edge_index.size(1), owner, like=edge_index)
    return edge_index.long(), edge_weight, num_nodes


def check_features(x: Tensor, num_nodes: int, owner: str = "") -> None:
    """Checks that node features ``x`` have one row per node."""
    where = _where(owner)
    if not isinstance(x, Tensor) or x.dim() < 1:
        raise ValueError(f"{where}expects 'x' to be a tensor of shape [N, F]")
    if x.size(0) != num_nodes:
        raise ValueError(
            f"{where}expects 'x' with one row per node: x.size(0) == num_nodes "
            f"(got {x.size(0)} rows for num_nodes={num_nodes})")


def assert_finite(t: Tensor, name: str) -> None:
    """Raises a ``ValueError`` naming ``name`` when ``t`` holds NaN or inf.

    On the CPU (and outside ``torch.compile``) the check is immediate; on an
    accelerator, or while compiling, it is queued with ``torch._assert_async``
    so that a training step never waits for the device (the error then
    surfaces at the next synchronization, as a ``RuntimeError`` with the
    same message)."""
    if not t.is_floating_point():
        return
    message = (f"'{name}' contains NaN or inf; a non-finite gate input would read as an "
               f"exactly pruned edge. Check the learning rate and the inputs that produced it")
    if t.device.type == "cpu" and not torch.compiler.is_compiling():
        if not bool(torch.isfinite(t).all()):
            raise ValueError(message)
    else:
        torch._assert_async(torch.isfinite(t).all(), message)
