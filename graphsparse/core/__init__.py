from ._groups import group_expand, group_reduce, group_sizes
from .gate import SparseGate, init_beta, sparse_gate
from .penalty import pnorm_penalty, safe_pow

__all__ = ["SparseGate", "sparse_gate", "init_beta", "pnorm_penalty", "safe_pow",
           "group_reduce", "group_expand", "group_sizes"]
