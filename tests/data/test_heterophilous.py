import os
import shutil

import numpy as np
import pytest
import torch

from graphsparse.data import DatasetNotFoundError
from graphsparse.data.heterophilous import (NAMES, STATS, HeterophilousNPZDataset,
                                            load_heterophilous)
from graphsparse.testing import require_data


def _raw(name):
    return require_data(f"heterophilous/{name}/raw/{name}.npz")


@pytest.mark.data
@pytest.mark.parametrize("name", NAMES)
def test_published_sizes(name):
    raw = np.load(_raw(name))
    nodes, edges, features, classes, _ = STATS[name]
    data = load_heterophilous(name)
    assert data.num_nodes == nodes and data.x.shape == (nodes, features)
    assert data.x.dtype == torch.float32
    assert int(data.y.max()) + 1 == classes and int(data.y.min()) == 0
    # symmetrized: every published undirected edge in both directions, nothing else
    assert data.edge_index.size(1) == 2 * edges
    row, col = data.edge_index
    assert not bool((row == col).any())
    code = row * nodes + col
    assert torch.equal(code.sort().values, (col * nodes + row).sort().values)
    e = torch.from_numpy(raw["edges"])
    lo, hi = e.min(1).values, e.max(1).values
    ref = torch.cat([lo * nodes + hi, hi * nodes + lo]).sort().values
    assert torch.equal(code.sort().values, ref)
    # 10 splits, as columns, disjoint
    masks = [data.train_mask, data.val_mask, data.test_mask]
    for m in masks:
        assert m.shape == (nodes, 10) and m.dtype == torch.bool
    assert int((masks[0].int() + masks[1].int() + masks[2].int()).max()) == 1
    tr, va, te = (m.sum(0) for m in masks)
    if name in ("minesweeper", "tolokers"):  # 50% / 25% / 25% in every split
        assert torch.all(tr == nodes // 2)
        assert torch.all((va - nodes // 4).abs() <= 1) and torch.all(tr + va + te == nodes)
    else:  # the filtered graphs keep the 48/32/20 splits of Pei et al. minus duplicates
        assert torch.all(tr + va + te == nodes)
        for count, share in zip((tr, va, te), (0.48, 0.32, 0.20)):
            assert torch.all((count.float() / nodes - share).abs() < 0.03), (count, share)
    # the splits differ from one another
    assert len({tuple(masks[0][:, s].nonzero().flatten().tolist()) for s in range(10)}) == 10
    assert torch.equal(data.y, torch.from_numpy(raw["node_labels"]))


@pytest.mark.data
def test_npz_dataset_matches_pyg_on_minesweeper(tmp_path):
    """Our processing of the npz format equals PyG's HeterophilousGraphDataset."""
    from torch_geometric.datasets import HeterophilousGraphDataset
    src = _raw("minesweeper")
    for sub in ("a", "b"):
        (tmp_path / sub / "minesweeper" / "raw").mkdir(parents=True)
        shutil.copy(src, tmp_path / sub / "minesweeper" / "raw")
    ours = HeterophilousNPZDataset(str(tmp_path / "a"), "minesweeper")[0]
    ref = HeterophilousGraphDataset(str(tmp_path / "b"), "Minesweeper")[0]
    assert set(ours.keys()) == set(ref.keys())
    for key in ref.keys():
        assert torch.equal(ours[key], ref[key]), key


@pytest.mark.data
def test_read_only_root_uses_a_writable_copy(tmp_path, monkeypatch):
    src = _raw("chameleon_filtered")
    root = tmp_path / "ro"
    (root / "heterophilous" / "chameleon_filtered" / "raw").mkdir(parents=True)
    shutil.copy(src, root / "heterophilous" / "chameleon_filtered" / "raw")
    os.chmod(root / "heterophilous" / "chameleon_filtered", 0o555)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    try:
        data = load_heterophilous("Chameleon-filtered", root=root)
        assert data.num_nodes == 890
        assert not (root / "heterophilous" / "chameleon_filtered" / "processed").exists()
        assert (tmp_path / "home" / ".cache" / "graphsparse" / "heterophilous"
                / "chameleon_filtered" / "processed" / "data.pt").is_file()
    finally:
        os.chmod(root / "heterophilous" / "chameleon_filtered", 0o755)


def test_missing_data_gives_clear_error(tmp_path, monkeypatch):
    from torch_geometric.datasets import HeterophilousGraphDataset

    def offline(self):
        raise OSError("no internet")
    monkeypatch.setattr(HeterophilousGraphDataset, "download", offline)
    monkeypatch.setattr(HeterophilousNPZDataset, "download", offline)
    for name in ("minesweeper", "squirrel_filtered"):
        with pytest.raises(DatasetNotFoundError, match=r"GRAPHSPARSE_DATA.*") as info:
            load_heterophilous(name, root=tmp_path)
        assert f"{name}.npz" in str(info.value)
        assert str(tmp_path / "heterophilous" / name / "raw") in str(info.value)


def test_unknown_name():
    with pytest.raises(ValueError, match="'name' must be one of"):
        load_heterophilous("cornell")
