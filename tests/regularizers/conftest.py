import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    """These tests run many tiny steps; one intra-op thread is fastest for them
    and does not fight other processes for cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
