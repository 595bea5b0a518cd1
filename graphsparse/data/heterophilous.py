"""Heterophilous node-classification graphs of Platonov et al. (ICLR 2023)
from the data root: minesweeper, tolokers, chameleon-filtered, squirrel-filtered."""
from __future__ import annotations

import os
import os.path as osp
import shutil
import stat
from pathlib import Path
from typing import Callable, Dict, Optional, Union

import numpy as np
import torch
from torch_geometric.data import Data, InMemoryDataset, download_url
from torch_geometric.utils import to_undirected

from .root import get_data_root, missing_dataset

#: name -> (nodes, undirected edges, features, classes, metric), as published
#: (Platonov et al., "A critical look at the evaluation of GNNs under heterophily",
#: Table 1 and the filtered graphs of Section 3).
STATS: Dict[str, tuple] = {
    "minesweeper": (10_000, 39_402, 7, 2, "roc_auc"),
    "tolokers": (11_758, 519_000, 10, 2, "roc_auc"),
    "chameleon_filtered": (890, 8_854, 2_325, 5, "accuracy"),
    "squirrel_filtered": (2_223, 46_998, 2_089, 5, "accuracy"),
}
NAMES = tuple(STATS)
#: the graphs that PyG's own :class:`~torch_geometric.datasets.HeterophilousGraphDataset` reads
_PYG_NAMES = ("roman_empire", "amazon_ratings", "minesweeper", "tolokers", "questions")
_URL = "https://github.com/yandex-research/heterophilous-graphs/raw/main/data"


def canonical_name(name: str) -> str:
    """``"Chameleon-filtered"`` -> ``"chameleon_filtered"`` (the file names)."""
    return name.lower().replace("-", "_")


class HeterophilousNPZDataset(InMemoryDataset):
    r"""A graph stored in the authors' npz format (keys ``node_features``,
    ``node_labels``, ``edges`` ``[E, 2]`` with every undirected edge once,
    ``train_masks`` / ``val_masks`` / ``test_masks`` ``[10, N]``), read from
    ``root/<name>/raw/<name>.npz`` and processed as PyG's
    :class:`~torch_geometric.datasets.HeterophilousGraphDataset` does: the
    edges are symmetrized (:math:`E \to 2E` directed) and the masks
    transposed to ``[N, 10]``. It reads any graph of that format, including
    the filtered chameleon and squirrel, which PyG's class refuses.

    Args:
        root (str): the folder holding ``<name>/raw/<name>.npz``.
        name (str): file name without extension, e.g. ``"chameleon_filtered"``.
        transform, pre_transform (callable, optional): as in PyG.
        force_reload (bool): process again even if ``processed/`` exists.
    """

    def __init__(self, root: str, name: str, transform: Optional[Callable] = None,
                 pre_transform: Optional[Callable] = None, force_reload: bool = False):
        self.name = canonical_name(name)
        super().__init__(root, transform, pre_transform, force_reload=force_reload)
        self.load(self.processed_paths[0])

    @property
    def raw_dir(self) -> str:
        return osp.join(self.root, self.name, "raw")

    @property
    def processed_dir(self) -> str:
        return osp.join(self.root, self.name, "processed")

    @property
    def raw_file_names(self) -> str:
        return f"{self.name}.npz"

    @property
    def processed_file_names(self) -> str:
        return "data.pt"

    def download(self) -> None:
        download_url(f"{_URL}/{self.name}.npz", self.raw_dir)

    def process(self) -> None:
        raw = np.load(self.raw_paths[0])
        x = torch.from_numpy(raw["node_features"])
        edge_index = torch.from_numpy(raw["edges"]).t().contiguous()
        data = Data(x=x, y=torch.from_numpy(raw["node_labels"]),
                    edge_index=to_undirected(edge_index, num_nodes=x.size(0)),
                    **{f"{s}_mask": torch.from_numpy(raw[f"{s}_masks"]).t().contiguous()
                       for s in ("train", "val", "test")})
        if self.pre_transform is not None:
            data = self.pre_transform(data)
        self.save([data], self.processed_paths[0])

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(name={self.name})"


def _writable(path: Path) -> bool:
    """Writable for us *and* meant to be written: a folder without write bits is
    treated as read-only even by root, whom ``os.access`` always lets write."""
    return os.access(path, os.W_OK) and bool(path.stat().st_mode & stat.S_IWUSR)


def _working_root(base: Path, name: str) -> Path:
    """``base`` when ``base/name`` is writable (PyG writes ``processed/`` there);
    else ``~/.cache/graphsparse/heterophilous`` with the raw file copied over."""
    raw = base / name / "raw" / f"{name}.npz"
    if not raw.is_file() or _writable(base / name):
        return base
    work = Path.home() / ".cache" / "graphsparse" / "heterophilous"
    dst = work / name / "raw" / raw.name
    if not dst.is_file() or dst.stat().st_size != raw.stat().st_size:
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(raw, dst)
        shutil.rmtree(work / name / "processed", ignore_errors=True)  # stale cache
    return work


def load_heterophilous(name: str, root: Optional[Union[str, os.PathLike]] = None,
                       device: Union[str, torch.device] = "cpu"):
    r"""Loads one of the heterophilous graphs of Platonov et al. with its 10
    standard splits.

    Minesweeper and tolokers go through PyG's
    :class:`~torch_geometric.datasets.HeterophilousGraphDataset`; the filtered
    chameleon and squirrel (duplicated nodes of the original versions removed)
    through :class:`HeterophilousNPZDataset`, which processes the same file
    format the same way. The raw file is ``<root>/heterophilous/<name>/raw/<name>.npz``
    (``root`` defaults to ``GRAPHSPARSE_DATA``); when that folder is read-only the
    file is copied to ``~/.cache/graphsparse/heterophilous`` so that the processed
    cache can be written. When it is missing, PyG downloads it; without internet
    a :class:`~graphsparse.data.DatasetNotFoundError` says where to put it.

    Metrics used by the authors (:data:`STATS`): ROC-AUC for minesweeper and
    tolokers (binary), accuracy for the two filtered graphs.

    Args:
        name (str): ``"minesweeper"``, ``"tolokers"``, ``"chameleon_filtered"``
            or ``"squirrel_filtered"`` (case and ``-`` / ``_`` do not matter).
        root (str, optional): the data root.
        device: where the returned tensors live.

    Returns:
        :class:`torch_geometric.data.Data` with ``x`` ``[N, F]`` (float),
        ``y`` ``[N]``, ``edge_index`` ``[2, 2M]`` (every undirected edge in both
        directions, no self-loops) and ``train_mask`` / ``val_mask`` /
        ``test_mask`` ``[N, 10]`` (split ``s`` is column ``s``).
    """
    key = canonical_name(name)
    if key not in STATS:
        raise ValueError(f"'name' must be one of {NAMES} (got {name!r})")
    base = get_data_root(root) / "heterophilous"
    raw = base / key / "raw" / f"{key}.npz"
    had_raw = raw.is_file()
    work = _working_root(base, key)
    try:
        if key in _PYG_NAMES:
            from torch_geometric.datasets import HeterophilousGraphDataset
            dataset = HeterophilousGraphDataset(str(work), key)
        else:
            dataset = HeterophilousNPZDataset(str(work), key)
    except (OSError, ValueError, RuntimeError) as exc:
        if had_raw:  # the file is there but unreadable: not a download problem
            raise
        raise missing_dataset(f"heterophilous graph {key} ({key}.npz)", raw.parent, exc) from exc
    return dataset[0].to(device)
