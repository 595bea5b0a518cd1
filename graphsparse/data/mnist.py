"""MNIST from its official IDX files (``root/MNIST/raw/*-idx?-ubyte[.gz]``).

The image count is read from each file's header, so partial copies (such as an
offline subset whose header count was set to match) load unchanged. Every file
is validated (magic number, dimensions, size) and a truncated or corrupted file
raises a ``ValueError`` that names it.
"""
from __future__ import annotations

import gzip
import os
import struct
import urllib.request
import zlib
from pathlib import Path
from typing import Optional, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from ..utils.validation import check_choice
from .root import get_data_root, missing_dataset

#: ``split -> (images file, labels file)``, the official names without ``.gz``.
MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
#: Official mirrors, tried in order.
MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
_IDX_UBYTE = 0x08  # IDX type code of unsigned bytes, the only one MNIST uses


def read_idx(path: Union[str, os.PathLike], ndim: Optional[int] = None) -> Tensor:
    """Reads one IDX file of unsigned bytes (gzipped when the name ends in
    ``.gz``) into a ``uint8`` tensor whose shape is the header's.

    Raises:
        ValueError: the file is truncated, corrupted, not IDX, not of unsigned
            bytes, or not ``ndim``-dimensional; the message names the file.
    """
    path = Path(path)
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                data = f.read()
        else:
            data = path.read_bytes()
    except (EOFError, OSError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
        if isinstance(e, FileNotFoundError):
            raise
        raise ValueError(f"MNIST file '{path}' is truncated or corrupted "
                         f"({type(e).__name__}: {e}); delete it and download it again") from e
    if len(data) < 4:
        raise ValueError(f"MNIST file '{path}' is truncated: {len(data)} bytes, "
                         f"shorter than an IDX header")
    zero, dtype, dims = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != _IDX_UBYTE or dims == 0:
        raise ValueError(f"'{path}' is not an IDX file of unsigned bytes "
                         f"(magic number 0x{data[:4].hex()}, expected 0x000008 followed by the "
                         f"number of dimensions)")
    if ndim is not None and dims != ndim:
        raise ValueError(f"IDX file '{path}' has {dims} dimensions, expected {ndim}")
    header = 4 + 4 * dims
    if len(data) < header:
        raise ValueError(f"MNIST file '{path}' is truncated inside its header")
    shape = struct.unpack(f">{dims}I", data[4:header])
    expected = header + int(np.prod(shape, dtype=np.int64))
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "longer than its header says"
        raise ValueError(f"MNIST file '{path}' is {what}: {len(data)} bytes, the header "
                         f"{tuple(shape)} implies {expected}")
    array = np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)
    return torch.from_numpy(array.copy())


def _find(raw: Path, name: str) -> Optional[Path]:
    for candidate in (raw / f"{name}.gz", raw / name):
        if candidate.is_file():
            return candidate
    return None


def _download(raw: Path, name: str) -> Path:
    raw.mkdir(parents=True, exist_ok=True)
    target = raw / f"{name}.gz"
    errors = []
    for mirror in MNIST_MIRRORS:
        tmp = target.with_suffix(".gz.part")
        try:
            urllib.request.urlretrieve(mirror + f"{name}.gz", tmp)
            tmp.replace(target)
            return target
        except OSError as e:
            errors.append(e)
            tmp.unlink(missing_ok=True)
    raise errors[-1]


def load_mnist(root: Optional[Union[str, os.PathLike]] = None, split: str = "train",
               device: Union[str, torch.device] = "cpu", download: bool = True
               ) -> Tuple[Tensor, Tensor]:
    """Loads an MNIST split as tensors on ``device``.

    Files are looked up as ``root/MNIST/raw/<name>.gz`` or un-gzipped
    ``root/MNIST/raw/<name>``; when absent and ``download`` is true they are
    fetched from the official mirrors (no checksum check: partial copies differ
    from the official files by design).

    Args:
        root (str, optional): data root; see :func:`get_data_root`.
        split (str, optional): ``"train"`` or ``"test"``. (default: ``"train"``)
        device (torch.device, optional): where the tensors go. (default: ``"cpu"``)
        download (bool, optional): download missing files. (default: ``True``)

    Returns:
        ``(images, labels)``: ``uint8 [N, 1, 28, 28]`` and ``int64 [N]``, ``N``
        taken from the files' headers.

    Raises:
        DatasetNotFoundError: files missing and not downloadable.
        ValueError: a file is truncated, corrupted or inconsistent (named).
    """
    check_choice(split, MNIST_FILES, "split", "load_mnist")
    raw = get_data_root(root) / "MNIST" / "raw"
    paths = []
    for name in MNIST_FILES[split]:
        path = _find(raw, name)
        if path is None:
            if not download:
                raise missing_dataset(f"MNIST file '{name}(.gz)'", raw)
            try:
                path = _download(raw, name)
            except OSError as e:
                raise missing_dataset(f"MNIST file '{name}(.gz)'", raw, e) from e
        paths.append(path)
    images = read_idx(paths[0], ndim=3)
    labels = read_idx(paths[1], ndim=1)
    if tuple(images.shape[1:]) != (28, 28):
        raise ValueError(f"MNIST images in '{paths[0]}' are {tuple(images.shape[1:])}, "
                         f"expected (28, 28)")
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"MNIST '{split}' files disagree: '{paths[0]}' holds "
                         f"{images.shape[0]} images but '{paths[1]}' {labels.shape[0]} labels")
    if labels.numel() and int(labels.max()) > 9:
        raise ValueError(f"MNIST labels in '{paths[1]}' exceed 9 (max {int(labels.max())}); "
                         f"the file is corrupted")
    return images.unsqueeze(1).to(device), labels.long().to(device)
