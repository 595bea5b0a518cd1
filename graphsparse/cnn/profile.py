"""Counting and timing, shared by the CNN examples and the regularizers:
parameters, FLOPs (counted by :class:`torch.utils.flop_counter.FlopCounterMode`,
not by hand) and interleaved wall-clock timing."""
from __future__ import annotations

import time
from typing import Callable, Dict, List, Mapping

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter entries (shared parameters counted once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


@torch.no_grad()
def count_flops(model: nn.Module, x: Tensor) -> int:
    """FLOPs of one eval-mode forward pass on ``x`` (a multiply-add counts 2),
    as counted by ``FlopCounterMode`` (convolutions and matrix products; batch
    norm and element-wise operations are not counted)."""
    was_training = model.training
    model.eval()
    try:
        counter = FlopCounterMode(display=False)
        with counter:
            model(x)
        return int(counter.get_total_flops())
    finally:
        model.train(was_training)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def benchmark(fns: Mapping[str, Callable[[], object]], repeats: int = 20, warmup: int = 3,
              device: torch.device = torch.device("cpu")) -> Dict[str, float]:
    """Median seconds per call of each function, measured **interleaved**
    (round-robin, after ``warmup`` calls of each) so that a load change on a
    shared machine affects all of them alike."""
    times: Dict[str, List[float]] = {k: [] for k in fns}
    for r in range(warmup + repeats):
        for k, fn in fns.items():
            _sync(device)
            t0 = time.perf_counter()
            fn()
            _sync(device)
            if r >= warmup:
                times[k].append(time.perf_counter() - t0)
    return {k: sorted(v)[len(v) // 2] for k, v in times.items()}


def time_inference(models: Mapping[str, nn.Module], x: Tensor, repeats: int = 20,
                   warmup: int = 3) -> Dict[str, float]:
    """Median eval-mode forward time (seconds per batch ``x``) of each model,
    interleaved in the same run; compare them as ratios."""
    modes = {k: m.training for k, m in models.items()}
    for m in models.values():
        m.eval()

    def run(m):
        def fn():
            with torch.inference_mode():
                m(x)
        return fn
    try:
        return benchmark({k: run(m) for k, m in models.items()}, repeats, warmup, x.device)
    finally:
        for k, m in models.items():
            m.train(modes[k])


def compare_models(before: nn.Module, after: nn.Module, x: Tensor, repeats: int = 20) -> dict:
    """Parameters, FLOPs and inference time of two models on the same input
    (e.g. a gated model and its compaction), with the ratios after/before."""
    times = time_inference({"before": before, "after": after}, x, repeats)
    out = {"params_before": count_params(before), "params_after": count_params(after),
           "flops_before": count_flops(before, x), "flops_after": count_flops(after, x),
           "time_before_s": times["before"], "time_after_s": times["after"],
           "batch_size": x.shape[0]}
    out["params_ratio"] = out["params_after"] / max(out["params_before"], 1)
    out["flops_ratio"] = out["flops_after"] / max(out["flops_before"], 1)
    out["speedup"] = out["time_before_s"] / out["time_after_s"]
    return out
