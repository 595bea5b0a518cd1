import os

import pytest
import torch

from graphsparse.utils.seed import deterministic_algorithms


def test_deterministic_algorithms_on_and_restored(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    assert not torch.are_deterministic_algorithms_enabled()
    bench = torch.backends.cudnn.benchmark
    with deterministic_algorithms():
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    assert not torch.are_deterministic_algorithms_enabled()
    assert torch.backends.cudnn.benchmark == bench
    assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ


def test_deterministic_algorithms_restored_on_error_and_disabled_is_a_no_op():
    with pytest.raises(RuntimeError):
        with deterministic_algorithms():
            raise RuntimeError
    assert not torch.are_deterministic_algorithms_enabled()
    with deterministic_algorithms(False):
        assert not torch.are_deterministic_algorithms_enabled()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_deterministic_cuda_scatter_is_repeatable():
    src = torch.randn(100000, device="cuda")
    index = torch.randint(0, 10, (100000,), device="cuda")
    with deterministic_algorithms():
        a = torch.zeros(10, device="cuda").index_add_(0, index, src)
        b = torch.zeros(10, device="cuda").index_add_(0, index, src)
    assert torch.equal(a, b)
