"""Structure learning you can run: a user's own graph in, a learned sparse
graph out."""
from .io import GraphInput, GraphInputError, karate_club, read_graph_input
from .learn import learn_structure, split_labelled
from .train import GCN_DEFAULTS, STRUCTURE_DEFAULTS, FitResult, fit_gcn, fit_structure

__all__ = ["GraphInput", "GraphInputError", "karate_club", "read_graph_input",
           "learn_structure", "split_labelled", "fit_structure", "fit_gcn", "FitResult",
           "STRUCTURE_DEFAULTS", "GCN_DEFAULTS"]
