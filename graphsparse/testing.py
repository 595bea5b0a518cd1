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


def two_communities(n: int = 40, seed: int = 0) -> tuple:
    """A small two-class graph for training tests: ``(x, edge_index, y,
    train_mask, val_mask, test_mask)`` with noisy one-hot features, random
    undirected edges (no self-loops), 8 training and 12 validation nodes."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = torch.nn.functional.one_hot(y, 2).float() + 0.8 * torch.randn(n, 2, generator=g)
    src, dst = torch.randint(0, n, (2, 6 * n), generator=g)
    keep = src != dst
    ei = torch.stack([src[keep], dst[keep]])
    ei = torch.cat([ei, ei.flip(0)], 1)
    train = torch.zeros(n, dtype=torch.bool)
    train[:8] = True
    val = torch.zeros(n, dtype=torch.bool)
    val[8:20] = True
    return x, ei, y, train, val, ~(train | val)


class StopAfter:
    """A ``stop()`` callable for training loops: true on its ``n``-th call
    (a programmatic Ctrl-C at a known point)."""

    def __init__(self, n: int) -> None:
        self.n, self.calls = n, 0

    def __call__(self) -> bool:
        self.calls += 1
        return self.calls == self.n


def torchrun(script: Path, *args: str, nproc: int = 2, timeout: float = 300) -> None:
    """Runs ``script`` under ``torch.distributed.run`` with ``nproc`` CPU
    processes on a free loopback port (one thread each); fails the test with
    the end of its stderr when it exits non-zero."""
    import socket
    import subprocess
    import sys
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
           "--master_addr", "127.0.0.1", "--master_port", str(port), str(script), *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode != 0:
        _pytest().fail(f"torchrun {script.name} exited {proc.returncode}:\n{proc.stderr[-3000:]}")


def check_reset_keeps_adjacency(model) -> None:
    """Asserts what every gated model promises of ``reset_parameters()``: its
    own weights are redrawn, the given adjacency (its thresholds) is left
    alone, and ``weight_parameters()`` holds no parameter of the adjacency."""
    adj = model.adjacency
    before = [p.clone() for p in model.weight_parameters()]
    beta = adj.beta_row.clone()
    model.reset_parameters()
    assert torch.equal(adj.beta_row, beta)
    after = list(model.weight_parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))
    assert not set(map(id, adj.parameters())) & set(map(id, model.weight_parameters()))
