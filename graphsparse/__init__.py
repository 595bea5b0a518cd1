"""graphsparse: learn sparse structure inside neural networks with
differentiable sparse gates.

* :mod:`graphsparse.core`: the gate (:class:`SparseGate`, :func:`sparse_gate`)
  and its p-norm penalty;
* :mod:`graphsparse.graph`: a learnable sparse adjacency with Sinkhorn
  normalization, and GCN layers that share it;
* :mod:`graphsparse.structure`: structure learning on a user's graph
  (:func:`learn_structure`, ``graphsparse learn``);
* :mod:`graphsparse.cnn`: ResNet depth, ResNeXt width and DenseNet
  connections learned by the gate, and compaction;
* :mod:`graphsparse.regularizers`: SGL0 and group-lasso channel sparsity;
* :mod:`graphsparse.data`: loaders that share one data root.
"""
import importlib
from typing import Any

__version__ = "0.1.0"

#: Where every top-level name lives. Subpackages (and torch, PyG) are imported
#: on first use, so that ``graphsparse learn`` can check its arguments and its
#: output folder in a fraction of a second, before any of them is loaded.
_EXPORTS = {
    "SparseGate": "core", "sparse_gate": "core", "init_beta": "core", "pnorm_penalty": "core",
    "GatedAdjacency": "graph", "EdgeScorer": "graph", "GatedGCNConv": "graph",
    "GatedGCN": "graph", "GatedResGCN": "graph", "GatedDAGNN": "graph",
    "EdgeWeighted": "graph", "sinkhorn": "graph",
    "sparse_features": "graph", "feature_dropout": "graph", "relu_dropout": "graph",
    "dropout_recompute": "graph", "sparse_linear": "graph", "edge_cosine": "graph",
    "edge_dot": "graph",
    "row_norm": "graph", "sym_norm": "graph",
    "StructureLearner": "structure", "learn_structure": "structure",
    "ResNet": "cnn", "ResNeXt": "cnn", "DenseNet": "cnn", "LeNet5Caffe": "cnn", "compact": "cnn",
    "SGL0": "regularizers", "GroupLasso": "regularizers", "SparseGroupLasso": "regularizers",
    "L1": "regularizers", "compact_channels": "regularizers",
    "seed_everything": "utils",
}
_SUBPACKAGES = ("cnn", "core", "data", "graph", "regularizers", "structure", "utils")

__all__ = list(_EXPORTS) + list(_SUBPACKAGES) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name in _SUBPACKAGES:
        return importlib.import_module(f"{__name__}.{name}")
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list:
    return sorted(set(globals()) | set(__all__))
