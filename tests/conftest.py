import pytest
import torch

# One thread per test process: `make test` runs two xdist workers on CI's two
# cores, and more threads than cores only slow every test down.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    """Every test starts from the same random state."""
    torch.manual_seed(0)
    yield
