r"""Sparsity metrics of the SGL0 paper (Bui et al., 2019, section 3).

The paper sets to zero every weight with :math:`|w| < 10^{-5}`, and every
neuron (group) whose *normalized* sum of absolute weights is below
:math:`10^{-5}`; here "normalized" means divided by the number of weights in the
neuron, i.e. the mean absolute weight. Then

* **weight sparsity** = zero weights / all covered weights,
* **neuron sparsity** = zero neurons / all neurons,

per layer and in total. "Weights" are all covered parameters (biases and
attached norms included), so LeNet-5-Caffe has the paper's 431,080 of them
with ``linear_groups="out"``. Neurons are the rows of each layer's group
matrix (see :class:`~graphsparse.regularizers.LayerGroups`).
"""
from __future__ import annotations

from typing import Dict, List, Tuple, Union

import torch
from torch import Tensor, nn

from ._layers import LayerGroups, collect_layers

#: The paper's threshold for "zero".
ZERO_TOL = 1e-5


def zero_masks(matrix: Tensor, tol: float = ZERO_TOL) -> Tuple[Tensor, Tensor]:
    """``(zero_weights [G, S], zero_neurons [G])`` of a group matrix after the
    paper's two thresholds: ``|w| < tol`` and ``mean_i |w_gi| < tol``."""
    a = matrix.detach().abs()
    dead = a.mean(dim=1) < tol
    return (a < tol) | dead[:, None], dead


def weight_sparsity(matrix: Tensor, tol: float = ZERO_TOL) -> float:
    """Fraction of zero weights of a ``[G, S]`` group matrix (paper, section 3)."""
    return float(zero_masks(matrix, tol)[0].float().mean())


def neuron_sparsity(matrix: Tensor, tol: float = ZERO_TOL) -> float:
    """Fraction of zero neurons (rows) of a ``[G, S]`` group matrix (paper, section 3)."""
    return float(zero_masks(matrix, tol)[1].float().mean())


def _layers_of(source, linear_groups: str) -> List[LayerGroups]:
    if isinstance(source, nn.Module):
        return collect_layers(source, linear_groups, owner="sparsity_report")
    if hasattr(source, "layers"):
        return source.layers
    return list(source)


@torch.no_grad()
def sparsity_report(source: Union[nn.Module, "object"], tol: float = ZERO_TOL,
                    linear_groups: str = "out") -> Dict:
    """Weight and neuron sparsity, per layer and total, in percent.

    Args:
        source: a model (its conv / linear layers are grouped with
            ``linear_groups``), a regularizer (its own groups) or a list of
            :class:`LayerGroups`.

    Returns:
        ``{"layers": {name: stats}, "total": stats}`` where ``stats`` holds
        ``weights``, ``zero_weights``, ``weight_sparsity`` (%), ``neurons``,
        ``zero_neurons``, ``neuron_sparsity`` (%).
    """
    layers = {}
    totals = dict(weights=0, zero_weights=0, neurons=0, zero_neurons=0)
    for layer in _layers_of(source, linear_groups):
        zw, zn = zero_masks(layer.matrix(), tol)
        stats = dict(weights=zw.numel(), zero_weights=int(zw.sum()),
                     neurons=zn.numel(), zero_neurons=int(zn.sum()))
        for k in totals:
            totals[k] += stats[k]
        layers[layer.name] = _percent(stats)
    return {"layers": layers, "total": _percent(totals)}


def _percent(stats: Dict) -> Dict:
    stats["weight_sparsity"] = 100.0 * stats["zero_weights"] / max(stats["weights"], 1)
    stats["neuron_sparsity"] = 100.0 * stats["zero_neurons"] / max(stats["neurons"], 1)
    return stats


@torch.no_grad()
def prune_small_(source, tol: float = ZERO_TOL, linear_groups: str = "out") -> None:
    """Sets to exact zero, in place, what the paper counts as zero: weights with
    ``|w| < tol`` and neurons whose mean absolute weight is below ``tol``."""
    for layer in _layers_of(source, linear_groups):
        zw, _ = zero_masks(layer.matrix(), tol)
        masked = layer.matrix().masked_fill(zw, 0.0)
        for p, new in zip(layer.params, layer.unmatrix(masked), strict=True):
            p.copy_(new)
