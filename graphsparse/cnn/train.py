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
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple, Union

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from ..data.cifar import CIFAR_MEAN, CIFAR_STD, normalize, random_crop_flip
from ..utils.checkpoint import atomic_save, load_checkpoint, rng_state, set_rng_state
from ..utils.interrupt import DeferredInterrupt, TrainingInterrupted
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
    r"""SGD (Nesterov) with two groups: weights (weight decay) and gate
    parameters (own learning rate, no weight decay); linear warm-up then cosine.

    With ``hp["freeze_beta"]`` the gate thresholds :math:`\beta` get learning
    rate 0 (they stay at the paper's initialization, where
    :math:`n\,\sigma(\beta) < 1`): the strongest component of a group then
    always survives, so no group (block, ResNeXt block's branches, dense
    layer's inputs) dies entirely; only the :math:`\alpha` compete."""
    core = unwrap(model)
    gate = list(core.gate_parameters()) if isinstance(core, GatedNetwork) else []
    ids = set(map(id, gate))
    groups = [{"params": [p for p in core.parameters() if id(p) not in ids],
               "weight_decay": hp["weight_decay"], "lr": hp["lr"]}]
    frozen = ([core.gate.beta] if isinstance(core, GatedNetwork) and core.gate is not None
              and hp.get("freeze_beta", False) else [])
    gate = [p for p in gate if all(p is not q for q in frozen)]
    if gate:
        groups.append({"params": gate, "weight_decay": 0.0, "lr": hp["gate_lr"]})
    if frozen:
        groups.append({"params": frozen, "weight_decay": 0.0, "lr": 0.0})
    opt = torch.optim.SGD(groups, lr=hp["lr"], momentum=hp["momentum"], nesterov=True)
    warm = max(1, int(hp["warmup_epochs"] * steps / max(hp["epochs"], 1)))

    def factor(step: int) -> float:   # multiplies every group's lr (0 stays 0)
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


def _gated_core(model: nn.Module) -> Optional[GatedNetwork]:
    core = unwrap(model)
    return core if isinstance(core, GatedNetwork) and core.gated else None


def fit(model: nn.Module, train: Tuple[Tensor, Tensor], test: Tuple[Tensor, Tensor],
        hp: dict, env: Optional[Distributed] = None, seed: int = 0, desc: str = "train",
        checkpoint: Optional[Union[str, Path]] = None, checkpoint_every: int = 1,
        resume: bool = False, stop: Optional[Callable[[], bool]] = None
        ) -> Dict[str, Any]:
    """Trains ``model`` (possibly DDP-wrapped) for ``hp["epochs"]`` epochs.

    At the start of every epoch the gated model's host mask is refreshed
    (:meth:`~graphsparse.cnn._gating.GatedNetwork.refresh_gate_state`, the one
    host read of the gate per epoch, which also stops a non-finite gate).

    Args:
        checkpoint (str or Path, optional): file written atomically every
            ``checkpoint_every`` epochs, after the last one, and on Ctrl-C /
            ``stop()`` (after the step in progress): model, optimizer, schedule,
            augmentation and global generators, position in the epoch, history.
        checkpoint_every (int): epochs between two checkpoints. (default: ``1``)
        resume (bool): continue from ``checkpoint`` when it exists; on CPU the
            result is bit-identical to an uninterrupted run. (default: ``False``)
        stop (callable, optional): polled between steps; when it returns true
            the run saves its checkpoint and raises :class:`TrainingInterrupted`
            (as Ctrl-C does in a single process).

    Returns test accuracy, the median training step time (seconds; the first
    five steps excluded as warm-up) and a per-epoch history."""
    images, labels = train
    env = env or Distributed(device=images.device)
    stats = (CIFAR_MEAN[hp["dataset"]], CIFAR_STD[hp["dataset"]])
    steps_per_epoch = images.shape[0] // hp["batch_size"]
    if steps_per_epoch == 0:
        raise ValueError(f"'batch_size' {hp['batch_size']} exceeds the {images.shape[0]} "
                         f"training images")
    check = int(checkpoint_every)
    if check < 1:
        raise ValueError(f"'checkpoint_every' must be a positive number of epochs (got "
                         f"{checkpoint_every})")
    opt, sched = make_optimizer(model, hp, hp["epochs"] * steps_per_epoch)
    aug = torch.Generator(device=images.device).manual_seed(seed * 1000 + env.rank)
    core = unwrap(model)
    gated = _gated_core(model)
    step_times, history = [], []
    start_epoch, start_step = 0, 0
    tot = torch.zeros(2, device=images.device)
    if resume and checkpoint is not None and Path(checkpoint).is_file():
        state = load_checkpoint(checkpoint, map_location=images.device)
        core.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        aug.set_state(state["augmentation"].cpu())
        set_rng_state(state["rng"])
        start_epoch, start_step = int(state["epoch"]), int(state["step"])
        history, step_times = list(state["history"]), list(state["step_times"])
        tot = state["running"].to(images.device)
        if gated is not None and state.get("alive") is not None:
            gated._alive = [bool(v) for v in state["alive"]]
            gated._alive_version = None        # as in the run: a mask older than the step
            gated._forwards_since_read = int(state["forwards_since_read"])

    def save(epoch: int, step: int) -> None:
        if checkpoint is None or not env.main:
            return
        atomic_save({"epoch": epoch, "step": step, "model": core.state_dict(),
                     "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                     "augmentation": aug.get_state(), "rng": rng_state(),
                     "history": history, "step_times": step_times, "running": tot.cpu(),
                     "alive": None if gated is None else gated.alive,
                     "forwards_since_read": 0 if gated is None else gated._forwards_since_read,
                     "seed": seed}, checkpoint)

    flag = DeferredInterrupt(enabled=env.world == 1, stop=stop).__enter__()
    bar = tqdm(range(start_epoch, hp["epochs"]), desc=desc, disable=not env.main, leave=False)
    try:
        for epoch in bar:
            model.train()
            first = start_step if epoch == start_epoch else 0
            if first == 0:
                tot = torch.zeros(2, device=images.device)
                if gated is not None:
                    gated.refresh_gate_state()     # the one host read of the gate per epoch
            batches = epoch_batches(images.shape[0], hp["batch_size"], epoch, seed, env)
            for step, idx in enumerate(batches):
                if step < first:
                    continue                        # done before the checkpoint
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
                if flag():
                    save(epoch, step + 1)
                    raise TrainingInterrupted(None if checkpoint is None else str(checkpoint))
            mean = (tot / steps_per_epoch).tolist()
            row = {"epoch": epoch + 1, "loss": mean[0], "penalty": mean[1]}
            if isinstance(core, GatedNetwork) and core.gated:
                row["structure"] = core.structure()
            history.append(row)
            bar.set_postfix(loss=f"{mean[0]:.3f}", pen=f"{mean[1]:.3f}")
            if (epoch + 1) % check == 0 or epoch + 1 == hp["epochs"]:
                save(epoch + 1, 0)
    finally:
        flag.close()
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

    matrix = model.gate_matrix()
    if matrix is None:
        raise ValueError(f"'plot_gates' needs a gated model (got the plain "
                         f"{type(model).__name__})")
    a = matrix.numpy()
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
