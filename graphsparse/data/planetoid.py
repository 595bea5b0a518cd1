"""Planetoid citation graphs (Cora, CiteSeer, PubMed) from the data root."""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Optional, Union

import torch

from .root import get_data_root, missing_dataset

NAMES = ("Cora", "CiteSeer", "PubMed")


def load_planetoid(name: str = "Cora", root: Optional[Union[str, os.PathLike]] = None,
                   device: Union[str, torch.device] = "cpu", normalize_features: bool = True):
    """Loads a Planetoid graph with its public split (e.g. 140/500/1000 on Cora)
    through PyG's :class:`~torch_geometric.datasets.Planetoid`.

    Raw files are read from ``<root>/planetoid/<name>/raw`` (``root`` defaults to
    ``GRAPHSPARSE_DATA``). When the root is read-only, the raw files are copied
    to ``~/.cache/graphsparse/planetoid`` so PyG can write its ``processed/``
    cache there. When they are missing, PyG downloads them; without internet a
    :class:`~graphsparse.data.DatasetNotFoundError` says where to put them.

    Args:
        name (str): ``"Cora"``, ``"CiteSeer"`` or ``"PubMed"``.
        root (str, optional): the data root.
        device: where the returned tensors live.
        normalize_features (bool): row-normalize the bag-of-words features, as
            Kipf & Welling. (default: ``True``)

    Returns:
        :class:`torch_geometric.data.Data` with ``x``, ``edge_index``, ``y`` and
        ``train_mask`` / ``val_mask`` / ``test_mask``.
    """
    if name not in NAMES:
        raise ValueError(f"'name' must be one of {NAMES} (got {name!r})")
    from torch_geometric.datasets import Planetoid
    from torch_geometric.transforms import NormalizeFeatures

    base = get_data_root(root) / "planetoid"
    raw = base / name / "raw"
    work = base
    if raw.is_dir() and not os.access(base / name, os.W_OK):
        work = Path.home() / ".cache" / "graphsparse" / "planetoid"
        dst = work / name / "raw"
        if not dst.is_dir() or len(list(dst.iterdir())) < len(list(raw.iterdir())):
            dst.mkdir(parents=True, exist_ok=True)
            for f in raw.iterdir():
                shutil.copy2(f, dst / f.name)
    had_raw = raw.is_dir()
    try:
        dataset = Planetoid(str(work), name,
                            transform=NormalizeFeatures() if normalize_features else None)
    except (OSError, ValueError, RuntimeError) as exc:
        if had_raw:  # files present but unreadable: not a download problem
            raise
        raise missing_dataset(f"Planetoid {name}", raw, exc) from exc
    return dataset[0].to(device)
