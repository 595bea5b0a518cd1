"""Helpers for tests (as ``torch_geometric.testing``): device parametrization
that skips CUDA cleanly without a GPU, and data-root lookups that skip on a
developer machine but fail under CI, where missing data is an error."""
from __future__ import annotations

import os
from pathlib import Path

import torch

from .data.root import get_data_root


def _pytest():
    import pytest  # test-only dependency, imported lazily
    return pytest


def devices() -> list:
    """``["cpu", "cuda"]`` as pytest params; the CUDA one is skipped without a GPU."""
    pytest = _pytest()
    return ["cpu", pytest.param("cuda", marks=[
        pytest.mark.cuda,
        pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
    ])]


def on_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_data(relative: str) -> Path:
    """Path of a dataset under the data root; skip if absent, fail under CI."""
    path = get_data_root() / relative
    if not path.exists():
        pytest = _pytest()
        msg = f"dataset missing: {path} (set GRAPHSPARSE_DATA to the data root)"
        if on_ci():
            pytest.fail(msg)
        pytest.skip(msg)
    return path
