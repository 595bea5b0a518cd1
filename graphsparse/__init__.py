"""graphsparse: learn sparse structure inside neural networks with
differentiable sparse gates."""
from .core import SparseGate, init_beta, pnorm_penalty, sparse_gate
from .utils import seed_everything

__version__ = "0.1.0"

__all__ = ["SparseGate", "sparse_gate", "init_beta", "pnorm_penalty", "seed_everything",
           "__version__"]
