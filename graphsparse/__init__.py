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
from . import cnn, core, data, graph, regularizers, structure, utils
from .cnn import DenseNet, LeNet5Caffe, ResNet, ResNeXt, compact
from .core import SparseGate, init_beta, pnorm_penalty, sparse_gate
from .graph import EdgeScorer, GatedAdjacency, GatedGCN, GatedGCNConv, row_norm, sinkhorn, sym_norm
from .regularizers import L1, SGL0, GroupLasso, SparseGroupLasso, compact_channels
from .structure import learn_structure
from .utils import seed_everything

__version__ = "0.1.0"

__all__ = [
    "SparseGate", "sparse_gate", "init_beta", "pnorm_penalty",
    "GatedAdjacency", "EdgeScorer", "GatedGCNConv", "GatedGCN", "sinkhorn", "row_norm", "sym_norm",
    "learn_structure",
    "ResNet", "ResNeXt", "DenseNet", "LeNet5Caffe", "compact",
    "SGL0", "GroupLasso", "SparseGroupLasso", "L1", "compact_channels",
    "seed_everything", "__version__",
]
