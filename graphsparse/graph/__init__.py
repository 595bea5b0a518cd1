"""Graph layers: a learnable sparse adjacency (the differentiable sparse gate
on rows and columns, Sinkhorn normalization) and a GCN that shares it."""
from ._ops import edge_cosine, edge_dot, sparse_linear
from .adjacency import GatedAdjacency
from .conv import GatedGCNConv
from .dagnn import GatedDAGNN
from .features import (
    dropout_recompute,
    feature_dropout,
    relu_dropout,
    sparse_features,
)
from .knn import knn_candidates, merge_candidates
from .model import GatedGCN, GatedResGCN
from .norm import row_norm, sym_norm
from .scorer import EdgeScorer
from .sinkhorn import sinkhorn
from .weighted import EdgeWeighted, check_weight_consumers

__all__ = ["GatedAdjacency", "EdgeScorer", "GatedGCNConv", "GatedGCN", "GatedResGCN", "GatedDAGNN",
           "EdgeWeighted", "check_weight_consumers", "knn_candidates", "merge_candidates",
           "sinkhorn", "row_norm", "sym_norm", "sparse_features", "feature_dropout",
           "relu_dropout", "dropout_recompute", "sparse_linear", "edge_cosine", "edge_dot"]
