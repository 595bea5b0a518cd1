"""Structure learning with DistributedDataParallel on mini-batches: two CPU
processes (gloo) under torchrun keep identical parameters, gates included,
equal to one process that averages the same batches' losses."""
import importlib.util
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from graphsparse.testing import torchrun

WORKER = Path(__file__).with_name("ddp_worker.py")


@pytest.mark.slow
@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                    reason="torch.distributed with gloo is not available")
def test_two_process_gloo_minibatches_match_one_process(tmp_path):
    torchrun(WORKER, str(tmp_path))
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    for name in r0:
        assert torch.equal(r0[name], r1[name]), name           # identical across processes

    spec = importlib.util.spec_from_file_location("graph_ddp_worker", WORKER)
    worker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(worker)
    reference = worker.run()
    for name, value in reference.items():
        torch.testing.assert_close(r0[name], value, atol=1e-5, rtol=1e-4, msg=name)
    steps, worker.STEPS = worker.STEPS, 0
    initial = worker.run()
    worker.STEPS = steps
    assert not torch.allclose(r0["adjacency.alpha"], initial["adjacency.alpha"])  # gates trained
