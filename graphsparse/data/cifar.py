"""CIFAR-10 / CIFAR-100 from the official python pickle batches, held whole on
one device, with batched augmentation (no per-image Python loop).

Security: the official batches are Python pickles, and a plain ``pickle.load``
runs whatever code a file names. :func:`read_cifar_batch` therefore unpickles
with :class:`CifarUnpickler`, which admits only what the official batches
contain (dicts, lists, strings, bytes, ints and NumPy arrays with their
reconstruction helpers); a file that names anything else is refused before
any of it runs. Archives :func:`download_cifar` fetches are also checked
against the official MD5 before they are extracted.
"""
from __future__ import annotations

import codecs
import os
import pickle
import tarfile
import urllib.request
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from ..utils.io import file_digest
from ..utils.validation import check_choice
from .root import get_data_root, missing_dataset, writable_cache

# name: (folder, archive URL, archive MD5, train files, test files, label key)
_SPECS = {
    "cifar10": ("cifar-10-batches-py",
                "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                "c58f30108f718f92721af3b95e74349a",
                [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], "labels"),
    "cifar100": ("cifar-100-python",
                 "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
                 "eb9058c3a382ffc7106e9ad4cf0f8f6b",
                 ["train"], ["test"], "fine_labels"),
}

#: Per-channel mean and standard deviation of the training images, in [0, 1].
CIFAR_MEAN = {"cifar10": (0.4914, 0.4822, 0.4465), "cifar100": (0.5071, 0.4865, 0.4409)}
CIFAR_STD = {"cifar10": (0.2470, 0.2435, 0.2616), "cifar100": (0.2673, 0.2564, 0.2762)}


class CorruptDatasetError(ValueError):
    """A dataset file exists but cannot be read (truncated, corrupted, wrong format)."""


def _latin1_encode(obj: str, encoding: str = "utf-8") -> bytes:
    # Python 3 pickles bytes at protocol 2 as _codecs.encode(text, "latin1")
    if encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"_codecs.encode with encoding {encoding!r} is not "
                                     f"part of a CIFAR batch")
    return codecs.encode(obj, "latin1")


def _cifar_globals() -> dict:
    from numpy._core import multiarray, numeric
    allowed = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
               ("_codecs", "encode"): _latin1_encode}
    for mod in ("numpy.core", "numpy._core"):   # NumPy 1 and 2 names of the same helpers
        allowed[(f"{mod}.multiarray", "_reconstruct")] = multiarray._reconstruct
        allowed[(f"{mod}.multiarray", "scalar")] = multiarray.scalar
        # a private helper that numpy's stubs do not declare
        allowed[(f"{mod}.numeric", "_frombuffer")] = numeric._frombuffer  # type: ignore[attr-defined]
    return allowed


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle names a global that :class:`CifarUnpickler` does not admit."""


class CifarUnpickler(pickle.Unpickler):
    """An unpickler that admits only what the official CIFAR batches hold:
    dicts, lists, tuples, strings, bytes, numbers and NumPy arrays (the
    ``ndarray`` / ``dtype`` classes and NumPy's array and scalar
    reconstruction helpers). Any other global a file names (``os.system``,
    ``builtins.eval``, a class of some package...) raises
    :class:`pickle.UnpicklingError` before it is called."""

    def find_class(self, module: str, name: str):
        obj = _cifar_globals().get((module, name))
        if obj is None:
            raise UnsafePickleError(
                f"refused to load '{module}.{name}': a CIFAR batch holds only NumPy arrays, "
                f"lists, dicts, strings, bytes and ints, so this file is not an official "
                f"batch and may carry code")
        return obj


def read_cifar_batch(path: Union[str, os.PathLike], label_key: str = "labels"
                     ) -> Tuple[np.ndarray, np.ndarray]:
    """Reads one pickle batch: images ``uint8 [N, 3, 32, 32]`` and labels
    ``int64 [N]``. ``N`` is taken from the file (batches may be partial).

    Raises:
        CorruptDatasetError: naming the file, when it is truncated, corrupted
            or not a CIFAR batch.
    """
    path = Path(path)
    hint = f"; delete '{path}' and download the dataset again"
    try:
        with open(path, "rb") as f:
            batch = CifarUnpickler(f, encoding="latin1").load()
    except UnsafePickleError as e:
        raise CorruptDatasetError(
            f"CIFAR batch '{path}': {e}; nothing in it was run{hint}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            ImportError, IndexError, KeyError, UnicodeDecodeError) as e:
        raise CorruptDatasetError(
            f"CIFAR batch '{path}' is truncated or corrupted "
            f"({type(e).__name__}: {e}){hint}") from e
    if not isinstance(batch, dict) or "data" not in batch or label_key not in batch:
        keys = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
        raise CorruptDatasetError(
            f"CIFAR batch '{path}' lacks the keys 'data' and '{label_key}' (got {keys}){hint}")
    data = np.asarray(batch["data"])
    labels = np.asarray(batch[label_key], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 \
            or labels.shape != (data.shape[0],):
        raise CorruptDatasetError(
            f"CIFAR batch '{path}' has 'data' {data.dtype} {data.shape} and "
            f"{labels.size} labels; expected uint8 [N, 3072] and N labels{hint}")
    return data.reshape(-1, 3, 32, 32), labels


def _md5(path: Path) -> str:
    return file_digest(path, "md5")


def download_cifar(name: str, root: Path) -> Path:
    """Downloads and extracts the official archive into ``root`` after an MD5 check."""
    folder, url, md5 = _SPECS[name][:3]
    root.mkdir(parents=True, exist_ok=True)
    archive = root / url.rsplit("/", 1)[1]
    if not archive.exists() or _md5(archive) != md5:
        tmp = archive.with_suffix(".part")
        urllib.request.urlretrieve(url, tmp)
        tmp.replace(archive)
    digest = _md5(archive)
    if digest != md5:
        raise CorruptDatasetError(f"'{archive}' has MD5 {digest}, expected {md5}; "
                                  f"delete it and try again")
    with tarfile.open(archive, "r:gz") as tar:
        # the "data" filter refuses absolute paths and links out of root (Python >= 3.10.12)
        safe: Dict[str, Any] = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        tar.extractall(root, **safe)
    return root / folder


def load_cifar(name: str = "cifar10", root: Optional[Union[str, os.PathLike]] = None,
               train: bool = True, device: Union[str, torch.device] = "cpu",
               download: bool = True) -> Tuple[Tensor, Tensor]:
    """Loads a CIFAR split whole onto ``device``.

    Reads ``<root>/cifar-10-batches-py/`` (or ``cifar-100-python/``), the
    folder of the official archive; when it is missing and ``download`` is
    true, downloads the archive (MD5-checked) into the data root, or into
    ``~/.cache/graphsparse`` when the root is not writable.

    Args:
        name (str): ``"cifar10"`` or ``"cifar100"``. (default: ``"cifar10"``)
        root (str, optional): data root; see :func:`get_data_root`.
        train (bool): training or test split. (default: ``True``)
        device: where the tensors go. (default: ``"cpu"``)
        download (bool): download when missing. (default: ``True``)

    Returns:
        ``(images, labels)``: ``uint8 [N, 3, 32, 32]`` and ``int64 [N]``.
    """
    check_choice(name, tuple(_SPECS), "name", "load_cifar")
    folder, _, _, train_files, test_files, label_key = _SPECS[name]
    base = get_data_root(root)
    path = base / folder
    if not path.is_dir():
        cache = writable_cache(base) if base.exists() else base
        if (cache / folder).is_dir():
            path = cache / folder
        elif not download:
            raise missing_dataset(name, path)
        else:
            try:
                path = download_cifar(name, cache)
            except (OSError, tarfile.TarError) as e:
                raise missing_dataset(name, path, e) from e
    files = [path / f for f in (train_files if train else test_files)]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise missing_dataset(f"{name} ({', '.join(missing)})", path)
    parts = [read_cifar_batch(f, label_key) for f in files]
    images = torch.from_numpy(np.concatenate([p[0] for p in parts]))
    labels = torch.from_numpy(np.concatenate([p[1] for p in parts]))
    return images.to(device), labels.to(device)


def random_crop_flip(images: Tensor, padding: int = 4, flip: bool = True,
                     generator: Optional[torch.Generator] = None) -> Tensor:
    """Random crop after zero-padding by ``padding`` pixels and random horizontal
    flip, for a whole batch ``[B, C, H, W]`` in one gather (no per-image loop).

    Each image gets its own offsets ``(dy, dx)`` in ``[0, 2 * padding]`` and its
    own flip; the crop and the flip are one index computation."""
    b, c, h, w = images.shape
    dev = images.device
    padded = torch.nn.functional.pad(images, (padding,) * 4)
    offsets = torch.randint(0, 2 * padding + 1, (2, b), generator=generator,
                            device=generator.device if generator else "cpu").to(dev)
    rows = offsets[0, :, None] + torch.arange(h, device=dev)             # [B, H]
    cols = torch.arange(w, device=dev).expand(b, w)                      # [B, W]
    if flip:
        mirror = torch.rand(b, generator=generator,
                            device=generator.device if generator else "cpu").to(dev) < 0.5
        cols = torch.where(mirror[:, None], cols.flip(1), cols)
    cols = offsets[1, :, None] + cols
    batch = torch.arange(b, device=dev)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # [B, H, W, C]
    return out.permute(0, 3, 1, 2).contiguous()


def normalize(images: Tensor, mean: Tuple[float, ...], std: Tuple[float, ...],
              dtype: torch.dtype = torch.float32) -> Tensor:
    """``uint8`` images in [0, 255] to ``dtype``, standardized per channel."""
    m = torch.tensor(mean, device=images.device, dtype=dtype).view(1, -1, 1, 1)
    s = torch.tensor(std, device=images.device, dtype=dtype).view(1, -1, 1, 1)
    return (images.to(dtype) / 255.0 - m) / s
