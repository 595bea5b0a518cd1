"""Structure learning you can run: a user's own graph in, a learned sparse
graph out."""
from .io import GraphInput, GraphInputError, karate_club, load_data_file, read_graph_input
from .learn import (
    CHECKPOINT_DIR,
    OUTPUT_FILES,
    check_learn_settings,
    learn_structure,
    split_labelled,
)
from .learner import LEARNER_DEFAULTS, StructureLearner
from .train import (
    ADJACENCY_DEFAULTS,
    DEFAULT_RECIPES,
    GCN_DEFAULTS,
    MODEL_DEFAULTS,
    RECIPES,
    STRUCTURE_DEFAULTS,
    FitResult,
    PlainGCN,
    build_adjacency,
    config_name,
    fit_gcn,
    fit_structure,
    recipe_config,
    select_structure,
    selected_config,
)

__all__ = ["GraphInput", "GraphInputError", "karate_club", "read_graph_input", "load_data_file",
           "learn_structure", "split_labelled", "check_learn_settings", "OUTPUT_FILES",
           "CHECKPOINT_DIR", "StructureLearner", "LEARNER_DEFAULTS",
           "fit_structure", "select_structure", "recipe_config", "selected_config", "config_name",
           "build_adjacency", "RECIPES", "DEFAULT_RECIPES",
           "fit_gcn", "FitResult", "PlainGCN", "STRUCTURE_DEFAULTS", "MODEL_DEFAULTS",
           "ADJACENCY_DEFAULTS", "GCN_DEFAULTS"]
