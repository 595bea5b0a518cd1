"""Run by ``test_ddp.py`` under ``torchrun --nproc_per_node 2`` (gloo, CPU):
a few training steps of a tiny gated ResNet, each process on its shard of the
global batch, then every process saves its parameters.

Also imported by the test to compute the single-process reference."""
import os
import sys

import torch

from graphsparse.cnn import ResNet
from graphsparse.cnn.train import make_optimizer, setup_distributed, train_step, wrap_model

HP = dict(lr=0.05, gate_lr=0.5, momentum=0.9, weight_decay=5e-4, warmup_epochs=0,
          epochs=1, p=0.5)
GLOBAL_BATCH, STEPS = 8, 3


def run(mode: str, rank: int = 0, world: int = 1, env=None) -> dict:
    """Trains from a fixed initialization; ``mode="eval"`` freezes batch norm
    statistics, which makes data parallelism exact (batch norm otherwise sees
    per-process batches)."""
    torch.manual_seed(0)
    model = ResNet(14, widths=(4, 8, 8), lambdas=[0.3, 0.1, 0.2])
    with torch.no_grad():
        model.gate.alpha.uniform_(-0.5, 0.5)
        model.gate.alpha[0, 1] = -30.0       # a dead block: skipped, its weights unused
    model = model.train(mode == "train")
    ddp = wrap_model(model, env) if env is not None else model
    opt, _ = make_optimizer(ddp, HP, STEPS)
    g = torch.Generator().manual_seed(1)
    local = GLOBAL_BATCH // world
    for _ in range(STEPS):
        x = torch.randn(GLOBAL_BATCH, 3, 16, 16, generator=g)
        y = torch.randint(0, 10, (GLOBAL_BATCH,), generator=g)
        train_step(ddp, opt, None, x[rank * local:(rank + 1) * local],
                   y[rank * local:(rank + 1) * local], HP)
    return {k: v.detach().clone() for k, v in model.named_parameters()}


if __name__ == "__main__":
    torch.set_num_threads(1)
    env = setup_distributed("cpu")
    out = sys.argv[1]
    for mode in ("train", "eval"):
        params = run(mode, env.rank, env.world, env)
        torch.save(params, os.path.join(out, f"{mode}_rank{env.rank}.pt"))
    torch.distributed.destroy_process_group()
