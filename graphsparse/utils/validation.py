"""Argument checks shared by every module: each raises a ``ValueError`` that
names the offending argument, what was received, and what is expected."""
from __future__ import annotations

import math
from typing import Any, Iterable, Optional

import torch
from torch import Tensor


def check_choice(value: Any, choices: Iterable[Any], name: str, owner: str = "") -> None:
    choices = tuple(choices)
    if value not in choices:
        where = f"'{owner}' " if owner else ""
        raise ValueError(f"{where}expects '{name}' to be one of {choices} (got {value!r})")


def check_positive_int(value: Any, name: str, owner: str = "", minimum: int = 1) -> int:
    where = f"'{owner}' " if owner else ""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{where}expects '{name}' to be an integer >= {minimum} (got {value!r})")
    return value


def check_p(p: float, name: str = "p") -> float:
    if not isinstance(p, (int, float)) or not (0.0 < float(p) <= 1.0):
        raise ValueError(
            f"'{name}' of the p-norm penalty must lie in (0, 1] (got {p!r}); "
            f"p = 0.5 is the paper's choice")
    return float(p)


def check_finite(t: Tensor, name: str) -> None:
    if t.is_floating_point() and not bool(torch.isfinite(t).all()):
        bad = int((~torch.isfinite(t)).sum())
        raise ValueError(
            f"'{name}' contains {bad} non-finite value(s) (NaN or inf); "
            f"check the learning rate or the inputs that produced it")


def check_index(index: Tensor, size: Optional[int], name: str = "index",
                length: Optional[int] = None) -> int:
    """Checks a group / node index: a 1-D integer tensor with entries in
    ``[0, size)``. Returns ``size`` (inferred as ``max + 1`` when None)."""
    if not isinstance(index, Tensor):
        raise ValueError(f"'{name}' must be a torch.Tensor (got {type(index).__name__})")
    if index.dtype not in (torch.long, torch.int32):
        raise ValueError(
            f"'{name}' must be an integer tensor of dtype torch.long "
            f"(got {index.dtype}); convert it with '{name}.long()'")
    if index.dim() != 1:
        raise ValueError(f"'{name}' must be one-dimensional (got shape {tuple(index.shape)})")
    if length is not None and index.numel() != length:
        raise ValueError(
            f"'{name}' must have one entry per component ({length}) (got {index.numel()})")
    if index.numel() == 0:
        return 0 if size is None else size
    lo, hi = int(index.min()), int(index.max())
    if lo < 0:
        raise ValueError(f"'{name}' contains negative entries (min {lo})")
    if size is None:
        return hi + 1
    if hi >= size:
        raise ValueError(
            f"'{name}' contains entry {hi}, out of range for {size} groups; "
            f"pass a larger 'num_groups' or fix '{name}'")
    return size


def check_nonnegative(value: Any, name: str, owner: str, strict: bool = False) -> float:
    """A finite float ``>= 0`` (``> 0`` when ``strict``), else a ``ValueError``
    naming ``name``."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and \
        math.isfinite(value) and (value > 0 if strict else value >= 0)
    if not ok:
        bound = "> 0" if strict else ">= 0"
        raise ValueError(f"'{owner}' expects '{name}' to be a finite number {bound} "
                         f"(got {value!r})")
    return float(value)
