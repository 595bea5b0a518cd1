"""CIFAR loader (real partial batches, synthetic batches of any size, broken
files) and the batched augmentation against a per-image reference."""
import pickle

import numpy as np
import pytest
import torch

from graphsparse.data.cifar import (CIFAR_MEAN, CIFAR_STD, CorruptDatasetError, load_cifar,
                                    normalize, random_crop_flip, read_cifar_batch)
from graphsparse.data.root import DatasetNotFoundError
from graphsparse.testing import devices, require_data


def _write_batch(path, n, seed=0):
    rng = np.random.default_rng(seed)
    batch = {"batch_label": "synthetic", "labels": rng.integers(0, 10, n).tolist(),
             "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
             "filenames": [f"{i}.png" for i in range(n)]}
    path.write_bytes(pickle.dumps(batch))
    return batch


def _fake_cifar(root, sizes=(7, 3, 5, 1, 4), test=6):
    folder = root / "cifar-10-batches-py"
    folder.mkdir()
    for i, n in enumerate(sizes, 1):
        _write_batch(folder / f"data_batch_{i}", n, seed=i)
    _write_batch(folder / "test_batch", test, seed=9)
    return folder


@pytest.mark.data
def test_reads_partial_cifar10_from_data_root():
    folder = require_data("cifar-10-batches-py")
    images, labels = load_cifar("cifar10", root=folder.parent, train=True, download=False)
    assert images.dtype == torch.uint8 and images.shape[1:] == (3, 32, 32)
    assert labels.dtype == torch.int64 and labels.shape == (images.shape[0],)
    assert images.shape[0] % 5 == 0 and images.shape[0] <= 50000   # 4,660 in the partial set
    assert 0 <= labels.min() and labels.max() <= 9
    test_images, _ = load_cifar("cifar10", root=folder.parent, train=False, download=False)
    assert test_images.shape[0] <= 10000


def test_batches_of_any_size(tmp_path):
    folder = _fake_cifar(tmp_path)
    images, labels = load_cifar(root=tmp_path, download=False)
    assert images.shape == (20, 3, 32, 32) and labels.shape == (20,)
    first = pickle.loads((folder / "data_batch_1").read_bytes())
    assert torch.equal(images[0], torch.from_numpy(first["data"][0].reshape(3, 32, 32)))
    assert labels[:7].tolist() == first["labels"]
    assert load_cifar(root=tmp_path, train=False, download=False)[0].shape[0] == 6


@pytest.mark.parametrize("damage", ["truncate", "garbage", "keys", "shape"])
def test_broken_batch_names_the_file(tmp_path, damage):
    folder = _fake_cifar(tmp_path)
    path = folder / "data_batch_3"
    raw = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(raw[: len(raw) // 2])
    elif damage == "garbage":
        path.write_bytes(b"\x00not a pickle at all" * 10)
    elif damage == "keys":
        path.write_bytes(pickle.dumps({"images": []}))
    else:
        path.write_bytes(pickle.dumps({"data": np.zeros((2, 100), np.uint8), "labels": [0, 1]}))
    with pytest.raises(CorruptDatasetError, match="data_batch_3"):
        load_cifar(root=tmp_path, download=False)
    with pytest.raises(CorruptDatasetError, match="data_batch_3"):
        read_cifar_batch(path)


def test_missing_dataset_without_download(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="GRAPHSPARSE_DATA"):
        load_cifar(root=tmp_path, download=False)
    with pytest.raises(ValueError, match="'name'"):
        load_cifar("cifar1000", root=tmp_path)


@pytest.mark.parametrize("device", devices())
def test_random_crop_flip_matches_per_image_reference(device):
    images = torch.randint(0, 256, (16, 3, 8, 8), dtype=torch.uint8, device=device)
    gen = torch.Generator().manual_seed(3)
    out = random_crop_flip(images, padding=2, generator=gen)
    gen.manual_seed(3)                                   # replay the same draws
    offsets = torch.randint(0, 5, (2, 16), generator=gen)
    mirror = torch.rand(16, generator=gen) < 0.5
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2))
    for i in range(16):
        dy, dx = offsets[:, i].tolist()
        ref = padded[i, :, dy:dy + 8, dx:dx + 8]
        if mirror[i]:
            ref = ref.flip(-1)
        assert torch.equal(out[i], ref), i
    assert mirror.any() and not mirror.all()


def test_identity_augmentation_and_normalize():
    images = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    assert torch.equal(random_crop_flip(images, padding=0, flip=False), images)
    x = normalize(images, CIFAR_MEAN["cifar10"], CIFAR_STD["cifar10"])
    ref = (images[:, 0].float() / 255 - 0.4914) / 0.2470
    torch.testing.assert_close(x[:, 0], ref)


class _Payload:
    """Unpickling this creates a file: a loader that runs it is unsafe."""

    def __init__(self, mark, how="os"):
        self.mark, self.how = str(mark), how

    def __reduce__(self):
        import os
        if self.how == "os":
            return (os.system, (f"touch '{self.mark}'",))
        return (open, (self.mark, "w"))


@pytest.mark.parametrize("where", ["top", "nested"])
@pytest.mark.parametrize("how", ["os", "open"])
def test_pickle_payload_in_a_batch_runs_nothing(tmp_path, where, how):
    folder = _fake_cifar(tmp_path)
    mark = tmp_path / "PWNED"
    if where == "top":
        evil = _Payload(mark, how)
    else:   # a valid-looking batch with the payload in one field
        evil = {"labels": [0, 1], "data": np.zeros((2, 3072), np.uint8),
                "filenames": [_Payload(mark, how), "b.png"]}
    (folder / "data_batch_2").write_bytes(pickle.dumps(evil))
    with pytest.raises(CorruptDatasetError, match=r"data_batch_2.*refused.*nothing in it was run"):
        load_cifar(root=tmp_path, download=False)
    assert not mark.exists()


def test_unpickler_admits_official_batch_forms(tmp_path):
    """Protocol 2 (bytes through _codecs.encode), 4, 5 and the NumPy 1 module
    names (numpy.core.multiarray) that the official Python 2 batches use."""
    rng = np.random.default_rng(0)
    batch = {"batch_label": b"training batch 1 of 5", "labels": [3, 1],
             "data": rng.integers(0, 256, (2, 3072), dtype=np.uint8),
             "filenames": [b"a.png", b"b.png"], "count": np.int64(2)}
    for proto in (2, 4, 5):
        raw = pickle.dumps(batch, protocol=proto)
        if proto == 2:
            assert b"numpy._core.multiarray\n_reconstruct" in raw
            raw = raw.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")
        (tmp_path / "b").write_bytes(raw)
        images, labels = read_cifar_batch(tmp_path / "b")
        assert np.array_equal(images.reshape(2, -1), batch["data"])
        assert labels.tolist() == [3, 1]


def test_unpickler_refuses_other_codecs(tmp_path):
    import _codecs

    class Enc:
        def __reduce__(self):
            return (_codecs.encode, ("x", "rot13"))
    (tmp_path / "b").write_bytes(pickle.dumps({"data": Enc(), "labels": []}))
    with pytest.raises(CorruptDatasetError, match="rot13"):
        read_cifar_batch(tmp_path / "b")
