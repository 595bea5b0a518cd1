"""Structure learning you can run: a user's own graph in, a learned sparse
graph out."""
from .io import GraphInput, GraphInputError, karate_club, read_graph_input
from .learn import learn_structure, split_labelled
from .train import (GCN_DEFAULTS, RECIPES, STRUCTURE_DEFAULTS, FitResult, PlainGCN, fit_gcn,
                    fit_structure, recipe_config, select_structure)

__all__ = ["GraphInput", "GraphInputError", "karate_club", "read_graph_input",
           "learn_structure", "split_labelled", "fit_structure", "select_structure", "recipe_config", "RECIPES", "fit_gcn", "FitResult", "PlainGCN",
           "STRUCTURE_DEFAULTS", "GCN_DEFAULTS"]
