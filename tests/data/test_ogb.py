"""The OGB loader on tiny datasets written in OGB's own on-disk layout (the
unzipped arxiv.zip / products.zip), read by the real ``ogb`` code."""
import gzip
import os
import sys

import pytest
import torch

pytest.importorskip("ogb", reason="ogb is optional: pip install 'graphsparse[ogb]'")

from graphsparse.data import DatasetNotFoundError  # noqa: E402
from graphsparse.data.ogb import dataset_dir, load_ogbn, ogbn_accuracy  # noqa: E402


def _csv(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt") as f:
        for r in rows:
            f.write(",".join(str(v) for v in (r if isinstance(r, (list, tuple)) else [r])) + "\n")


def write_tiny_ogbn(root, name, n=12, f=5, classes=4, seed=0):
    """OGB's layout: raw/*.csv.gz, split/<split>/*.csv.gz and RELEASE_v1.txt."""
    g = torch.Generator().manual_seed(seed)
    folder = dataset_dir(name, root)
    raw = folder / "raw"
    src = torch.arange(n)
    dst = (src + 1 + torch.randint(0, n - 1, (n,), generator=g)) % n  # no self-loops
    edges = torch.stack([src, dst]).t()
    edges = torch.cat([edges, torch.tensor([[0, 5], [5, 0]])])      # one reciprocal pair
    x = torch.randn(n, f, generator=g).double()
    y = torch.randint(0, classes, (n,), generator=g)
    _csv(raw / "edge.csv.gz", edges.tolist())
    _csv(raw / "node-feat.csv.gz", [[f"{v:.6f}" for v in row] for row in x.tolist()])
    _csv(raw / "node-label.csv.gz", y.tolist())
    _csv(raw / "num-node-list.csv.gz", [n])
    _csv(raw / "num-edge-list.csv.gz", [edges.size(0)])
    if name == "ogbn-arxiv":
        _csv(raw / "node_year.csv.gz", (2000 + torch.arange(n)).tolist())
    perm = torch.randperm(n, generator=g)
    split = {"train": perm[:6], "valid": perm[6:9], "test": perm[9:]}
    sub = "time" if name == "ogbn-arxiv" else "sales_ranking"
    for key, idx in split.items():
        _csv(folder / "split" / sub / f"{key}.csv.gz", idx.tolist())
    (folder / "RELEASE_v1.txt").write_text("tiny test copy\n")
    return dict(x=x.float(), y=y, edges=edges, split=split, n=n)


def _pairs(edge_index):
    return sorted(map(tuple, edge_index.t().tolist()))


@pytest.mark.parametrize("name", ["ogbn-arxiv", "ogbn-products"])
def test_reads_ogb_layout(tmp_path, name):
    ref = write_tiny_ogbn(tmp_path, name)
    data = load_ogbn(name, root=tmp_path)
    n = ref["n"]
    assert data.num_nodes == n
    assert torch.allclose(data.x, ref["x"], atol=1e-6) and data.x.dtype == torch.float32
    assert torch.equal(data.y, ref["y"])
    e = ref["edges"]
    both = set(map(tuple, e.tolist())) | set(map(tuple, e.flip(1).tolist()))
    assert _pairs(data.edge_index) == sorted(both)
    for key, mask in (("train", data.train_mask), ("valid", data.val_mask),
                      ("test", data.test_mask)):
        assert torch.equal(mask.nonzero().flatten(), ref["split"][key].sort().values)
    if name == "ogbn-arxiv":
        assert data.node_year.view(-1).tolist() == list(range(2000, 2000 + n))
        # directed as stored when asked
        directed = load_ogbn(name, root=tmp_path, undirected=False)
        assert _pairs(directed.edge_index) == sorted(map(tuple, e.tolist()))
    assert (dataset_dir(name, tmp_path) / "processed").is_dir()


def test_read_only_root_is_mirrored(tmp_path, monkeypatch):
    root = tmp_path / "ro"
    write_tiny_ogbn(root, "ogbn-arxiv")
    folder = dataset_dir("ogbn-arxiv", root)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    os.chmod(folder, 0o555)
    try:
        data = load_ogbn("ogbn-arxiv", root=root)
    finally:
        os.chmod(folder, 0o755)
    assert data.num_nodes == 12
    assert not (folder / "processed").exists()
    assert (tmp_path / "home" / ".cache" / "graphsparse" / "ogb" / "ogbn_arxiv"
            / "processed").is_dir()


def test_missing_data_says_where_files_go(tmp_path, monkeypatch):
    from ogb.nodeproppred import PygNodePropPredDataset

    def offline(self):
        raise OSError("no internet")
    monkeypatch.setattr(PygNodePropPredDataset, "download", offline)
    with pytest.raises(DatasetNotFoundError) as info:
        load_ogbn("ogbn-products", root=tmp_path)
    msg = str(info.value)
    assert str(tmp_path / "ogb" / "ogbn_products") in msg
    assert "products.zip" in msg and "split/sales_ranking" in msg and "GRAPHSPARSE_DATA" in msg
    assert not (tmp_path / "ogb" / "ogbn_products").exists()  # no half folder left behind
    # a folder without OGB's release file: a clear error, not ogb's console prompt
    (tmp_path / "ogb" / "ogbn_arxiv" / "raw").mkdir(parents=True)
    with pytest.raises(DatasetNotFoundError, match="RELEASE_v1.txt"):
        load_ogbn("ogbn-arxiv", root=tmp_path)


def test_accuracy_through_evaluator():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 1.0], [0.0, 2.0]]).repeat(1, 20)
    y = torch.tensor([0, 1, 1, 39])
    assert ogbn_accuracy("ogbn-arxiv", logits, y) == pytest.approx(0.5)
    mask = torch.tensor([True, True, False, False])
    assert ogbn_accuracy("ogbn-arxiv", logits, y, mask) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="'name'"):
        ogbn_accuracy("ogbn-mag", logits, y)


def test_names_and_missing_package(monkeypatch):
    with pytest.raises(ValueError, match="'name' must be one of"):
        load_ogbn("ogbn-proteins")
    monkeypatch.setitem(sys.modules, "ogb.nodeproppred", None)
    with pytest.raises(ImportError, match=r'pip install "graphsparse\[ogb\]"'):
        load_ogbn("ogbn-arxiv")


def _example():
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parents[2] / "examples" / "ogbn.py"
    spec = importlib.util.spec_from_file_location("ogbn_example", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_example_runs_and_stops_without_data(tmp_path, capsys, monkeypatch):
    ex = _example()
    write_tiny_ogbn(tmp_path, "ogbn-arxiv", n=30)
    out = tmp_path / "out.json"
    res = ex.main(["--dataset", "ogbn-arxiv", "--root", str(tmp_path), "--runs", "2",
                   "--epochs", "3", "--device", "cpu", "--out", str(out)])
    rec, gated = res["records"]
    assert rec["method"] == "gcn" and len(rec["runs"]) == 2
    assert rec["settings"]["hidden"] == 256 and rec["settings"]["batch_norm"] is True
    for r in rec["runs"] + gated["runs"]:
        assert 0.0 <= r["test"] <= 1.0 and 0 <= r["epoch"] < 3
    assert gated["method"] == "gated" and gated["settings"]["learner"]["reduction"] == "mean"
    assert all(0.0 <= r["edge_sparsity"] <= 1.0 for r in gated["runs"])
    # long enough for the gate to start (at a third of the epochs) and prune
    res = ex.main(["--dataset", "ogbn-arxiv", "--root", str(tmp_path), "--runs", "1",
                   "--methods", "gated", "--epochs", "150", "--device", "cpu",
                   "--out", str(out)])
    assert res["records"][0]["runs"][0]["edge_sparsity"] > 0
    assert out.is_file()
    # without data: exit status 2 and the folder where the files go
    from ogb.nodeproppred import PygNodePropPredDataset

    def offline(self):
        raise OSError("no internet")
    monkeypatch.setattr(PygNodePropPredDataset, "download", offline)
    with pytest.raises(SystemExit) as info:
        ex.main(["--dataset", "ogbn-products", "--root", str(tmp_path / "empty")])
    assert info.value.code == 2
    assert str(tmp_path / "empty" / "ogb" / "ogbn_products") in capsys.readouterr().err
