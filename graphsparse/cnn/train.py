"""Training code shared by the CIFAR examples: whole dataset on the device,
batched augmentation, SGD with the gate parameters in their own group (no
weight decay), the per-stage penalty, and PyTorch's own data parallelism.

Data parallelism: run the examples under ``torchrun``; every process builds
the same model, takes its shard of each global batch (``batch_size / world``
images) and :class:`~torch.nn.parallel.DistributedDataParallel` averages the
gradients. The gate parameters are ordinary parameters of the model, so they
are averaged like the weights; the penalty is added on every process to the
mean loss of its shard, so the averaged gradient is exactly the gradient of
``mean loss over the global batch + penalty``. Batch norm statistics are per
process unless ``sync_bn`` is set (CUDA only).
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from ..data.cifar import CIFAR_MEAN, CIFAR_STD, normalize, random_crop_flip
from ._gating import GatedNetwork


@dataclass
class Distributed:
    """This process's place in a data-parallel run (``world == 1``: a single process)."""
    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()


def setup_distributed(device: Optional[str] = None) -> Distributed:
    """Joins the process group described by the ``torchrun`` environment
    (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``PORT``); NCCL
    on CUDA, gloo on CPU. Without that environment: a single process."""
    cuda = torch.cuda.is_available() if device is None else device.startswith("cuda")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Distributed(device=torch.device(device or ("cuda" if cuda else "cpu")))
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if cuda:
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    return Distributed(rank, world, torch.device(f"cuda:{local}" if cuda else "cpu"))


def wrap_model(model: nn.Module, env: Distributed, sync_bn: bool = False) -> nn.Module:
    """``DistributedDataParallel`` when ``env.world > 1``, else the model itself."""
    if env.world == 1:
        return model
    if sync_bn and env.device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    # A gated ResNet skips blocks whose gate is zero: their weights get no gradient.
    unused = isinstance(model, GatedNetwork) and model.gated and model.skips_dead_components
    ids = [env.device.index] if env.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=unused)


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, DistributedDataParallel) else model


def make_optimizer(model: nn.Module, hp: dict, steps: int
                   ) -> Tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """SGD (Nesterov) with two groups: weights (weight decay) and gate
    parameters (own learning rate, no weight decay); linear warm-up then cosine."""
    core = unwrap(model)
    gate = list(core.gate_parameters()) if isinstance(core, GatedNetwork) else []
    ids = set(map(id, gate))
    groups = [{"params": [p for p in core.parameters() if id(p) not in ids],
               "weight_decay": hp["weight_decay"], "lr": hp["lr"]}]
    if gate:
        groups.append({"params": gate, "weight_decay": 0.0, "lr": hp["gate_lr"]})
    opt = torch.optim.SGD(groups, lr=hp["lr"], momentum=hp["momentum"], nesterov=True)
    warm = max(1, int(hp["warmup_epochs"] * steps / max(hp["epochs"], 1)))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, steps - warm))))
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)


def epoch_batches(n: int, batch_size: int, epoch: int, seed: int, env: Distributed):
    """Index tensors of this process's shard of every global batch of an epoch.
    All processes draw the same permutation; the last partial batch is dropped."""
    g = torch.Generator().manual_seed(seed * 100003 + epoch)
    perm = torch.randperm(n, generator=g)
    local = batch_size // env.world
    for start in range(0, n - batch_size + 1, batch_size):
        lo = start + env.rank * local
        yield perm[lo:lo + local]


def loss_fn(model: nn.Module, x: Tensor, y: Tensor, hp: dict) -> Tuple[Tensor, Tensor]:
    """Cross-entropy of the batch and the model's penalty (one gate forward)."""
    core = unwrap(model)
    amp = hp.get("amp", False) and x.device.type == "cuda"
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
        loss = F.cross_entropy(model(x), y, label_smoothing=hp.get("label_smoothing", 0.0))
    pen = core.penalty(hp["p"]) if isinstance(core, GatedNetwork) and core.gated \
        else loss.new_zeros(())
    return loss, pen


def train_step(model, opt, sched, x, y, hp) -> Tuple[Tensor, Tensor]:
    loss, pen = loss_fn(model, x, y, hp)
    opt.zero_grad(set_to_none=True)
    (loss + pen).backward()
    opt.step()
    if sched is not None:
        sched.step()
    return loss, pen


@torch.no_grad()
def evaluate(model: nn.Module, images: Tensor, labels: Tensor, stats: tuple,
             env: Optional[Distributed] = None, batch_size: int = 500) -> float:
    """Test accuracy (%), each process scoring its shard, summed over processes."""
    env = env or Distributed(device=images.device)
    core = unwrap(model)
    was = core.training
    core.eval()
    correct = torch.zeros((), device=images.device, dtype=torch.long)
    idx = torch.arange(env.rank, images.shape[0], env.world, device=images.device)
    for i in range(0, idx.numel(), batch_size):
        j = idx[i:i + batch_size]
        correct += (core(normalize(images[j], *stats)).argmax(1) == labels[j]).sum()
    if env.world > 1:
        dist.all_reduce(correct)
    core.train(was)
    return 100.0 * correct.item() / images.shape[0]


def fit(model: nn.Module, train: Tuple[Tensor, Tensor], test: Tuple[Tensor, Tensor],
        hp: dict, env: Optional[Distributed] = None, seed: int = 0, desc: str = "train"
        ) -> Dict[str, object]:
    """Trains ``model`` (possibly DDP-wrapped) for ``hp["epochs"]`` epochs.

    Returns test accuracy, the median training step time (seconds; the first
    five steps excluded as warm-up) and a per-epoch history."""
    images, labels = train
    env = env or Distributed(device=images.device)
    stats = (CIFAR_MEAN[hp["dataset"]], CIFAR_STD[hp["dataset"]])
    steps_per_epoch = images.shape[0] // hp["batch_size"]
    if steps_per_epoch == 0:
        raise ValueError(f"'batch_size' {hp['batch_size']} exceeds the {images.shape[0]} "
                         f"training images")
    opt, sched = make_optimizer(model, hp, hp["epochs"] * steps_per_epoch)
    aug = torch.Generator(device=images.device).manual_seed(seed * 1000 + env.rank)
    core = unwrap(model)
    step_times, history = [], []
    bar = tqdm(range(hp["epochs"]), desc=desc, disable=not env.main, leave=False)
    for epoch in bar:
        model.train()
        tot = torch.zeros(2, device=images.device)
        for idx in epoch_batches(images.shape[0], hp["batch_size"], epoch, seed, env):
            idx = idx.to(images.device)
            x = normalize(random_crop_flip(images[idx], generator=aug), *stats)
            if env.device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            loss, pen = train_step(model, opt, sched, x, labels[idx], hp)
            if env.device.type == "cuda":
                torch.cuda.synchronize()
            step_times.append(time.perf_counter() - t0)
            tot += torch.stack([loss.detach().float(), pen.detach().float()])
        tot = (tot / steps_per_epoch).tolist()
        row = {"epoch": epoch + 1, "loss": tot[0], "penalty": tot[1]}
        if isinstance(core, GatedNetwork) and core.gated:
            row["structure"] = core.structure()
        history.append(row)
        bar.set_postfix(loss=f"{tot[0]:.3f}", pen=f"{tot[1]:.3f}")
    warm = step_times[5:] or step_times
    acc = evaluate(model, *test, stats, env)
    return {"test_acc": acc, "step_time_s": sorted(warm)[len(warm) // 2], "history": history}


def step_time_ratio(gated: nn.Module, plain: nn.Module, x: Tensor, y: Tensor, hp: dict,
                    repeats: int = 10) -> Dict[str, float]:
    """Training step time of two models measured interleaved in the same run
    (on copies, so the trained models are not changed)."""
    from copy import deepcopy

    from .profile import benchmark

    def stepper(model):
        model = deepcopy(model).train()
        opt, _ = make_optimizer(model, hp, 1)
        return lambda: train_step(model, opt, None, x, y, hp)
    t = benchmark({"gated": stepper(gated), "plain": stepper(plain)}, repeats, 2, x.device)
    return {"gated_step_s": t["gated"], "plain_step_s": t["plain"],
            "ratio": t["gated"] / t["plain"]}


def plot_gates(model: GatedNetwork, path: str, title: str = "") -> None:
    """A heat map of the gate values, one row per competition group; exact
    zeros are left white and printed as 0."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    a = model.gate_matrix().numpy()
    rows, cols = a.shape
    fig, ax = plt.subplots(figsize=(max(4.0, 1.5 + 0.5 * cols), max(2.5, 1.0 + 0.35 * rows)))
    im = ax.imshow(np.where(a == 0, np.nan, a), cmap="viridis", vmin=0,
                   vmax=max(1e-6, float(np.nanmax(a))), aspect="auto")
    for (i, j), v in np.ndenumerate(a):
        if not np.isnan(v):
            ax.text(j, i, "0" if v == 0 else f"{v:.2f}", ha="center", va="center",
                    fontsize=7, color="black" if v == 0 else "white")
    ax.set_xticks(range(cols))
    ax.set_yticks(range(rows))
    ax.set_xlabel(model.component_label)
    ax.set_ylabel(model.group_label)
    ax.set_title(title or f"{model.__class__.__name__} gate values", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.04)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
