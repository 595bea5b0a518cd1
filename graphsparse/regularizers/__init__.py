"""Structured sparsity regularizers: SGL0 (sparse group l0-lasso) and its
baselines (group lasso, sparse group lasso, l1), the paper's sparsity metrics,
and channel compaction of the sparse result."""
from ._layers import LayerGroups, collect_layers
from .base import StructuredRegularizer
from .compact import CompactionReport, compact_channels
from .experiment import TrainingInterrupted, fit_regularized
from .finetune import ZeroMask
from .group_lasso import L1, GroupLasso, SparseGroupLasso, group_lasso_penalty, l1_penalty
from .metrics import (
    ZERO_TOL,
    neuron_sparsity,
    prune_small_,
    sparsity_report,
    weight_sparsity,
    zero_masks,
)
from .sgl0 import SGL0, hard_threshold

__all__ = [
    "StructuredRegularizer", "SGL0", "GroupLasso", "SparseGroupLasso", "L1",
    "hard_threshold", "group_lasso_penalty", "l1_penalty",
    "sparsity_report", "weight_sparsity", "neuron_sparsity", "zero_masks", "prune_small_",
    "ZERO_TOL", "compact_channels", "CompactionReport", "LayerGroups", "collect_layers",
    "ZeroMask", "fit_regularized", "TrainingInterrupted",
]
