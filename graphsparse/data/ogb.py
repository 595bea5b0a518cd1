"""OGB node-property-prediction graphs (ogbn-arxiv, ogbn-products) from the
data root, through ``ogb`` (optional: ``pip install "graphsparse[ogb]"``)."""
from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path
from typing import Dict, Optional, Union

import torch
from torch import Tensor

from .root import ENV_VAR, DatasetNotFoundError, get_data_root

#: name -> (nodes, edges as OGB counts them, features, classes, split folder); OGB's
#: paper, Table 2: ogbn-arxiv's edges are directed citations, ogbn-products' undirected.
STATS: Dict[str, tuple] = {
    "ogbn-arxiv": (169_343, 1_166_243, 128, 40, "time"),
    "ogbn-products": (2_449_029, 61_859_140, 100, 47, "sales_ranking"),
}
NAMES = tuple(STATS)
_INSTALL = 'pip install "graphsparse[ogb]"'


def _require_ogb():
    try:
        from ogb.nodeproppred import Evaluator, PygNodePropPredDataset
    except ImportError as exc:
        raise ImportError(f"the OGB loaders need the optional package 'ogb': {_INSTALL} "
                          f"(or pip install ogb)") from exc
    return PygNodePropPredDataset, Evaluator


def _pyg_storage_classes() -> list:
    """PyG's plain storage classes inside the ``processed/`` file that ``ogb``
    pickles whole; ``torch.load`` (``weights_only=True`` since torch 2.6) refuses
    them unless allowed. Allowing these data classes runs no code."""
    from torch_geometric.data.data import DataEdgeAttr, DataTensorAttr
    from torch_geometric.data.storage import GlobalStorage
    return [DataEdgeAttr, DataTensorAttr, GlobalStorage]


def dataset_dir(name: str, root: Optional[Union[str, os.PathLike]] = None) -> Path:
    """Where ``name``'s files live: ``<root>/ogb/ogbn_arxiv`` (OGB's folder name,
    ``-`` replaced by ``_``), ``root`` defaulting to ``GRAPHSPARSE_DATA``."""
    return get_data_root(root) / "ogb" / name.replace("-", "_")


def _writable(path: Path) -> bool:
    return os.access(path, os.W_OK) and bool(path.stat().st_mode & stat.S_IWUSR)


def _working_base(folder: Path) -> Path:
    """The folder OGB gets as its root: the data root's ``ogb/`` when writable,
    else a cache folder whose dataset folder links to the read-only files, so
    that OGB can write ``processed/`` beside them."""
    if _writable(folder):
        return folder.parent
    work = Path.home() / ".cache" / "graphsparse" / "ogb"
    mirror = work / folder.name
    mirror.mkdir(parents=True, exist_ok=True)
    for entry in folder.iterdir():
        if entry.name == "processed":
            continue
        link = mirror / entry.name
        if not link.exists():
            link.symlink_to(entry.resolve(), target_is_directory=entry.is_dir())
    return work


def _not_found(name: str, folder: Path, cause: Optional[BaseException]) -> DatasetNotFoundError:
    url_name = name.split("-")[1]
    split = STATS[name][4]
    return DatasetNotFoundError(
        f"{name} was not found under '{folder}' and could not be downloaded"
        + (f" ({type(cause).__name__}: {cause})" if cause else "")
        + f". Unzip http://snap.stanford.edu/ogb/data/nodeproppred/{url_name}.zip there, "
        f"so that '{folder}' holds raw/ (edge.csv.gz, node-feat.csv.gz, node-label.csv.gz, "
        f"num-node-list.csv.gz, num-edge-list.csv.gz), split/{split}/ (train, valid, "
        f"test .csv.gz) and RELEASE_v1.txt; or point {ENV_VAR} (or 'root') at a data root "
        f"whose ogb/ folder holds it.")


def load_ogbn(name: str, root: Optional[Union[str, os.PathLike]] = None,
              undirected: bool = True, device: Union[str, torch.device] = "cpu"):
    r"""Loads ogbn-arxiv or ogbn-products with its official split through
    ``ogb``'s :class:`~ogb.nodeproppred.PygNodePropPredDataset`.

    The files are OGB's own layout under ``<root>/ogb/<ogbn_name>/``
    (:func:`dataset_dir`); without them ``ogb`` downloads into that folder (it
    asks before downloading more than 1 GB, as for ogbn-products); without
    internet a :class:`~graphsparse.data.DatasetNotFoundError` says where the
    files go. A read-only data root is mirrored by links in
    ``~/.cache/graphsparse/ogb`` so that ``ogb`` can write its ``processed/``.

    Args:
        name (str): ``"ogbn-arxiv"`` or ``"ogbn-products"``.
        root (str, optional): the data root (default: ``GRAPHSPARSE_DATA``).
        undirected (bool): add the reverse of every edge, as OGB's reference GCN
            does for the directed citations of ogbn-arxiv (ogbn-products is
            already symmetric). (default: ``True``)
        device: where the returned tensors live.

    Returns:
        :class:`torch_geometric.data.Data` with ``x`` ``[N, F]`` (float),
        ``y`` ``[N]`` (long; OGB's ``[N, 1]`` flattened), ``edge_index``
        ``[2, E]`` and boolean ``train_mask`` / ``val_mask`` / ``test_mask``
        ``[N]`` from ``get_idx_split()`` (``"valid"`` is ``val_mask``), plus any
        node attribute of the files (``node_year`` for ogbn-arxiv).
    """
    if name not in STATS:
        raise ValueError(f"'name' must be one of {NAMES} (got {name!r})")
    PygNodePropPredDataset, _ = _require_ogb()
    folder = dataset_dir(name, root)
    existed = folder.exists()
    if existed and not (folder / "RELEASE_v1.txt").is_file():
        # ogb would stop and ask on the console whether to download it again
        raise _not_found(name, folder, FileNotFoundError(f"no RELEASE_v1.txt in '{folder}'"))
    try:
        base = _working_base(folder) if existed else folder.parent
        if not existed:
            base.mkdir(parents=True, exist_ok=True)
        with torch.serialization.safe_globals(_pyg_storage_classes()):
            dataset = PygNodePropPredDataset(name=name, root=str(base))
            split = dataset.get_idx_split()
    except (OSError, EOFError, RuntimeError) as exc:
        if existed and (folder / "raw").is_dir():
            raise  # the files are there but unreadable: not a download problem
        if not existed and folder.exists():  # a failed download left an empty folder
            shutil.rmtree(folder, ignore_errors=True)
        raise _not_found(name, folder, exc) from exc
    except SystemExit as exc:  # ogb exits when a download is declined
        if not existed and folder.exists():
            shutil.rmtree(folder, ignore_errors=True)
        raise _not_found(name, folder, None) from exc
    data = dataset[0]
    data.y = data.y.view(-1).long()
    data.x = data.x.float()
    if undirected:
        from torch_geometric.utils import to_undirected
        data.edge_index = to_undirected(data.edge_index, num_nodes=data.num_nodes)
    for key, idx in (("train", split["train"]), ("val", split["valid"]), ("test", split["test"])):
        mask = torch.zeros(data.num_nodes, dtype=torch.bool)
        mask[idx] = True
        data[f"{key}_mask"] = mask
    return data.to(device)


def ogbn_accuracy(name: str, logits: Tensor, y: Tensor, mask: Optional[Tensor] = None) -> float:
    r"""Accuracy by OGB's :class:`~ogb.nodeproppred.Evaluator` (metric ``"acc"``)
    of the arg-max predictions on the nodes of ``mask``.

    Shapes: ``logits`` ``[N, C]``, ``y`` ``[N]`` or ``[N, 1]``, ``mask`` ``[N]`` bool.
    """
    if name not in STATS:
        raise ValueError(f"'name' must be one of {NAMES} (got {name!r})")
    _, Evaluator = _require_ogb()
    pred = logits.argmax(-1, keepdim=True)
    y = y.view(-1, 1)
    if mask is not None:
        pred, y = pred[mask], y[mask]
    return float(Evaluator(name).eval({"y_true": y.cpu(), "y_pred": pred.cpu()})["acc"])
