"""Helpers that the SGL0 comparisons (``examples/mnist_sgl0.py``,
``examples/cifar_sgl0.py``) share: building a regularizer by name, finalizing
a trained model, and reporting (table and per-layer sparsity figure)."""
from __future__ import annotations

import argparse
import copy
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..utils.checkpoint import atomic_save, load_checkpoint, rng_state, set_rng_state
from ..utils.interrupt import DeferredInterrupt, TrainingInterrupted
from .base import StructuredRegularizer
from .compact import CompactionReport, compact_channels
from .finetune import ZeroMask
from .group_lasso import L1, GroupLasso, SparseGroupLasso
from .metrics import prune_small_, sparsity_report
from .sgl0 import SGL0

#: Regularizers by the names the examples use (``"none"`` means no regularizer).
REGULARIZERS = {"group_lasso": GroupLasso, "sparse_group_lasso": SparseGroupLasso,
                "l1": L1, "sgl0": SGL0}


def add_common_arguments(parser: argparse.ArgumentParser, hp: Dict, out: str) -> None:
    """The command-line options both SGL0 examples take: ``--methods``,
    ``--seed``, ``--threads``, ``--device``, ``--root``, ``--out``."""
    parser.add_argument("--methods", nargs="+", default=list(hp["methods"]),
                        help="any of: none " + " ".join(REGULARIZERS))
    parser.add_argument("--seed", type=int, default=hp["seed"])
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--root", default=None, help="data root (default: $GRAPHSPARSE_DATA)")
    parser.add_argument("--out", default=out, help="output folder")


def make_regularizer(method: str, model: nn.Module, **kwargs) -> Optional[StructuredRegularizer]:
    """``REGULARIZERS[method](model, **kwargs)``; ``None`` for ``"none"``.
    Arguments a class does not take (``beta`` for group lasso, ...) are dropped."""
    if method == "none":
        return None
    if method not in REGULARIZERS:
        raise ValueError(f"'make_regularizer' expects 'method' to be 'none' or one of "
                         f"{tuple(REGULARIZERS)} (got {method!r})")
    cls = REGULARIZERS[method]
    own = {"beta", "beta_growth", "grow_every"} if cls is SGL0 else set()
    own |= {"lam_l1"} if cls is SparseGroupLasso else set()
    common = {"lam", "num_samples", "linear_groups", "norms", "modules"}
    return cls(model, **{k: v for k, v in kwargs.items() if k in own | common})


def train_epoch(model: nn.Module, reg: Optional[StructuredRegularizer],
                opt: torch.optim.Optimizer, batches: Iterable[Tuple[Tensor, Tensor]],
                loss_fn: Callable[[Tensor, Tensor], Tensor] = F.cross_entropy,
                mask: Optional[ZeroMask] = None) -> float:
    """One epoch of ``loss + reg.penalty()`` with ``reg.step()`` after every
    optimizer step and ``reg.epoch_end()`` at the end. Returns the last loss.

    Args:
        mask (ZeroMask, optional): masked fine-tuning: the gradients of its
            zeros are masked before every step and its zeros written back
            after it, so they stay exactly zero. (default: ``None``)
    """
    model.train()
    loss = torch.zeros(())
    for xb, yb in batches:
        loss = loss_fn(model(xb), yb)
        if reg is not None:
            loss = loss + reg.penalty()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if mask is not None:
            mask.mask_grad_()
        opt.step()
        if mask is not None:
            mask.apply_()
        if reg is not None:
            reg.step()
    if reg is not None:
        reg.epoch_end()
    return float(loss.detach())




def fit_regularized(model: nn.Module, reg: Optional[StructuredRegularizer],
                    opt: torch.optim.Optimizer,
                    batches: Callable[[], Iterable[Tuple[Tensor, Tensor]]],
                    epochs: int,
                    scheduler: Optional[torch.optim.lr_scheduler.LRScheduler] = None,
                    generator: Optional[torch.Generator] = None,
                    checkpoint: Optional[Union[str, Path]] = None, checkpoint_every: int = 1,
                    resume: bool = False, stop: Optional[Callable[[], bool]] = None,
                    on_epoch: Optional[Callable[[int, float], None]] = None,
                    mask: Optional[ZeroMask] = None) -> List[float]:
    """``epochs`` epochs of :func:`train_epoch` (``batches()`` gives one
    epoch's batches), ``scheduler.step()`` after each, with checkpoints.

    Every ``checkpoint_every`` epochs and after the last one, ``checkpoint`` is
    written atomically: model, optimizer, scheduler, regularizer (its
    ``state_dict``, e.g. SGL0's ``V`` and ``beta``), the batch-order
    ``generator``, the global generators and the loss history. With
    ``resume=True`` an existing checkpoint is continued; on CPU the result is
    bit-identical to an uninterrupted run. Ctrl-C (single process, main
    thread) or ``stop()`` returning true ends the run after the epoch in
    progress, with a checkpoint, by raising :class:`TrainingInterrupted`.

    Args:
        on_epoch (callable, optional): ``on_epoch(epoch, last_loss)`` after each
            epoch (1-based), e.g. for progress lines.

    Returns:
        The last loss of every epoch (all epochs, resumed ones included).
    """
    every = int(checkpoint_every)
    if every < 1:
        raise ValueError(f"'checkpoint_every' must be a positive number of epochs (got "
                         f"{checkpoint_every})")
    if int(epochs) < 1:
        raise ValueError(f"'epochs' must be a positive integer (got {epochs})")
    history: List[float] = []
    start = 0
    if resume and checkpoint is not None and Path(checkpoint).is_file():
        state = load_checkpoint(checkpoint, map_location=next(model.parameters()).device)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(state["scheduler"])
        if reg is not None:
            reg.load_state_dict(state["regularizer"])
        if generator is not None:
            generator.set_state(state["generator"].cpu())
        set_rng_state(state["rng"])
        start, history = int(state["epoch"]), [float(v) for v in state["history"]]

    def save(epoch: int) -> None:
        if checkpoint is None:
            return
        atomic_save({"epoch": epoch, "history": history, "model": model.state_dict(),
                     "optimizer": opt.state_dict(),
                     "scheduler": None if scheduler is None else scheduler.state_dict(),
                     "regularizer": None if reg is None else reg.state_dict(),
                     "generator": None if generator is None else generator.get_state(),
                     "rng": rng_state()}, checkpoint)

    with DeferredInterrupt(stop=stop) as sigint:
        for epoch in range(start, int(epochs)):
            history.append(train_epoch(model, reg, opt, batches(), mask=mask))
            if scheduler is not None:
                scheduler.step()
            if on_epoch is not None:
                on_epoch(epoch + 1, history[-1])
            interrupted = sigint.requested
            if interrupted or (epoch + 1) % every == 0 or epoch + 1 == int(epochs):
                save(epoch + 1)
            if interrupted and epoch + 1 < int(epochs):
                raise TrainingInterrupted(None if checkpoint is None else str(checkpoint),
                                          epoch + 1)
    return history


@torch.no_grad()
def error_rate(model: nn.Module, x: Tensor, y: Tensor,
               transform: Optional[Callable[[Tensor], Tensor]] = None, batch: int = 1000) -> float:
    """Test error (%) of ``model`` in eval mode on ``transform(x)``, batched."""
    was = model.training
    model.eval()
    wrong = 0
    for i in range(0, len(x), batch):
        xb = x[i:i + batch] if transform is None else transform(x[i:i + batch])
        wrong += int((model(xb).argmax(1) != y[i:i + batch]).sum())
    model.train(was)
    return 100.0 * wrong / max(len(x), 1)


def compacted_copy(model: nn.Module, probe: Tensor) -> Tuple[nn.Module, CompactionReport, float]:
    """An eval-mode copy of ``model`` with :func:`compact_channels` applied, its
    report, and the largest output change on ``probe`` (should be ~0)."""
    model.eval()
    small = copy.deepcopy(model)
    report = compact_channels(small, probe)
    with torch.no_grad():
        gap = float((small(probe) - model(probe)).abs().max())
    return small, report, gap


def finalize(model: nn.Module, reg: Optional[StructuredRegularizer],
             linear_groups: str = "out", **kwargs) -> Dict:
    """Writes exact zeros (``reg.finalize(**kwargs)``, or the paper's 1e-5
    thresholds without a regularizer) and returns the :func:`sparsity_report`."""
    if reg is not None:
        reg.finalize(**kwargs)
        return reg.sparsity()
    prune_small_(model, linear_groups=linear_groups)
    return sparsity_report(model, linear_groups=linear_groups)


def format_table(results: Dict[str, Dict]) -> str:
    """One line per method: test error (final; with raw ``W`` before finalization;
    finalized but before masked fine-tuning, when it ran), validation error when
    held out, weight / neuron sparsity, parameters before / after compaction."""
    first = next(iter(results.values()), {})
    ft = "test_error_finalized" in first and first.get("finetune_seconds", 0) > 0
    val = "val_error" in first
    alt = next((k for k in first if k.startswith("neuron_sparsity_")), None)
    head = f"{'method':<20}{'test err %':>11}{'(raw W)':>9}"
    head += f"{'(pre-FT)':>10}" if ft else ""
    head += f"{'val err %':>10}" if val else ""
    head += f"{'weight sp %':>13}{'neuron sp %':>13}"
    head += f"{'(' + alt.rsplit('_', 1)[1] + ')':>7}" if alt else ""
    lines = [head + f"{'params':>10}{'compact':>10}"]
    for m, r in results.items():
        line = f"{m:<20}{r['test_error']:>11.2f}{r['test_error_before_finalize']:>9.2f}"
        line += f"{r['test_error_finalized']:>10.2f}" if ft else ""
        line += f"{r['val_error']:>10.2f}" if val else ""
        line += f"{r['weight_sparsity']:>13.2f}{r['neuron_sparsity']:>13.2f}"
        line += f"{r[alt]:>7.1f}" if alt else ""
        lines.append(line + f"{r['params']:>10}{r['params_compact']:>10}")
    return "\n".join(lines)


def plot_layer_sparsity(results: Dict[str, Dict], path, title: str) -> None:
    """Bar chart of weight and neuron sparsity per layer, one bar per method."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    methods = list(results)
    layers = list(results[methods[0]]["layers"])
    fig, axes = plt.subplots(2, 1, figsize=(max(7.5, 0.45 * len(layers) + 2), 6.5), sharex=True)
    width = 0.8 / len(methods)
    for ax, key in zip(axes, ("weight_sparsity", "neuron_sparsity"), strict=True):
        for j, m in enumerate(methods):
            vals = [results[m]["layers"][layer][key] for layer in layers]
            ax.bar([i + j * width for i in range(len(layers))], vals, width, label=m)
        ax.set_ylabel(key.replace("_", " ") + " (%)")
        ax.set_ylim(0, 100)
    axes[1].set_xticks([i + 0.4 - width / 2 for i in range(len(layers))], layers,
                       rotation=60 if len(layers) > 6 else 0, fontsize=8)
    axes[0].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
