import gzip
import struct

import numpy as np
import pytest
import torch

from graphsparse.data import DatasetNotFoundError
from graphsparse.data.mnist import load_mnist, read_idx
from graphsparse.testing import require_data


def _idx(array: np.ndarray) -> bytes:
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def _write_split(raw, n=5, gz=True, images=None, labels=None):
    raw.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    images = _idx(rng.integers(0, 256, (n, 28, 28))) if images is None else images
    labels = _idx(rng.integers(0, 10, (n,))) if labels is None else labels
    for name, data in (("t10k-images-idx3-ubyte", images), ("t10k-labels-idx1-ubyte", labels)):
        if gz:
            with gzip.open(raw / f"{name}.gz", "wb") as f:
                f.write(data)
        else:
            (raw / name).write_bytes(data)


@pytest.mark.data
def test_reads_the_partial_files():
    require_data("MNIST/raw")
    x, y = load_mnist(split="train", download=False)
    assert x.shape == (14_262, 1, 28, 28) and x.dtype == torch.uint8  # count from the header
    assert y.shape == (14_262,) and y.dtype == torch.int64
    xt, yt = load_mnist(split="test", download=False)
    assert xt.shape == (10_000, 1, 28, 28) and int(yt.max()) == 9
    assert y[:5].tolist() == [5, 0, 4, 1, 9]  # the well-known first training labels


@pytest.mark.parametrize("gz", [True, False])
def test_round_trip_gzipped_and_plain(tmp_path, gz):
    _write_split(tmp_path / "MNIST" / "raw", n=7, gz=gz)
    x, y = load_mnist(tmp_path, "test", download=False)
    assert x.shape == (7, 1, 28, 28) and y.shape == (7,)


@pytest.mark.parametrize("gz,cut,message", [
    (True, 40, r"t10k-images-idx3-ubyte.gz' is truncated or corrupted"),   # gzip stream cut
    (False, 100, r"t10k-images-idx3-ubyte' is truncated: 3836 bytes"),   # body cut
    (False, 3925, r"t10k-images-idx3-ubyte' is truncated inside its header"),
])
def test_truncated_files_name_the_file(tmp_path, gz, cut, message):
    raw = tmp_path / "MNIST" / "raw"
    _write_split(raw, gz=gz)
    path = raw / ("t10k-images-idx3-ubyte" + (".gz" if gz else ""))
    path.write_bytes(path.read_bytes()[:-cut])
    with pytest.raises(ValueError, match=message):
        load_mnist(tmp_path, "test", download=False)


def test_corrupted_files_name_the_file(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    _write_split(raw)
    (raw / "t10k-labels-idx1-ubyte.gz").write_bytes(b"not a gzip file at all")
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte.gz"):
        load_mnist(tmp_path, "test", download=False)
    bad_magic = b"\x00\x00\x0d\x03" + b"\x00" * 20
    (raw / "x.idx").write_bytes(bad_magic)
    with pytest.raises(ValueError, match="x.idx' is not an IDX file"):
        read_idx(raw / "x.idx")


def test_inconsistent_files_are_rejected(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    _write_split(raw, labels=_idx(np.zeros(4)))  # 5 images, 4 labels
    with pytest.raises(ValueError, match="5 images but .* 4 labels"):
        load_mnist(tmp_path, "test", download=False)
    _write_split(raw, images=_idx(np.zeros((5, 28))))  # 2-D images
    with pytest.raises(ValueError, match="2 dimensions, expected 3"):
        load_mnist(tmp_path, "test", download=False)


def test_missing_files_without_download(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="t10k-images"):
        load_mnist(tmp_path, "test", download=False)
    with pytest.raises(ValueError, match="'split'"):
        load_mnist(tmp_path, "valid", download=False)
