"""Datasets from one data root (``GRAPHSPARSE_DATA``): Planetoid graphs, CIFAR
and MNIST as device tensors, and seeded edge corruption."""
from .cifar import CifarUnpickler, CorruptDatasetError, load_cifar, normalize, random_crop_flip
from .corrupt import corrupt_edges
from .heterophilous import HeterophilousNPZDataset, load_heterophilous
from .mnist import load_mnist, read_idx
from .ogb import load_ogbn, ogbn_accuracy
from .planetoid import load_planetoid
from .root import ENV_VAR, DatasetNotFoundError, get_data_root, missing_dataset, writable_cache

__all__ = ["ENV_VAR", "DatasetNotFoundError", "CorruptDatasetError", "get_data_root",
           "missing_dataset", "writable_cache", "load_planetoid", "corrupt_edges",
           "load_heterophilous", "HeterophilousNPZDataset", "load_ogbn", "ogbn_accuracy",
           "load_cifar", "CifarUnpickler", "normalize", "random_crop_flip", "load_mnist",
           "read_idx"]
