"""Data parallelism with PyTorch's own engine: two CPU processes (gloo) under
torchrun keep identical parameters, gates included, and match one process
on the full batch where that is exact (frozen batch-norm statistics)."""
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
def test_two_process_gloo_matches_single_process(tmp_path):
    torchrun(WORKER, str(tmp_path))

    spec = importlib.util.spec_from_file_location("ddp_worker", WORKER)
    worker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(worker)
    for mode in ("train", "eval"):
        r0, r1 = (torch.load(tmp_path / f"{mode}_rank{r}.pt") for r in (0, 1))
        for name in r0:                                  # identical across processes
            assert torch.equal(r0[name], r1[name]), (mode, name)
    reference = worker.run("eval")                       # one process, full batch
    r0 = torch.load(tmp_path / "eval_rank0.pt")
    for name, value in reference.items():
        torch.testing.assert_close(r0[name], value, atol=1e-5, rtol=1e-4, msg=name)
    steps, worker.STEPS = worker.STEPS, 0
    initial = worker.run("eval")
    worker.STEPS = steps
    assert not torch.allclose(r0["gate.alpha"], initial["gate.alpha"])       # gates trained
    dead = "stages.0.1.conv1.weight"                     # skipped block: untouched
    assert torch.equal(r0[dead], initial[dead])
