import pytest
import torch
from torch_geometric.utils import coalesce

from graphsparse.graph.knn import knn_candidates, merge_candidates


def _reference(x, k, metric, exclude_self):
    """Brute force on the full N x N matrix in float64, ties -> smaller index."""
    x = x.double()
    if metric == "cosine":
        x = torch.nn.functional.normalize(x, dim=1)
    if metric == "euclidean":
        s = -torch.cdist(x, x) ** 2
    else:
        s = x @ x.t()
    n = x.size(0)
    out = []
    for i in range(n):
        cand = [j for j in range(n) if not (exclude_self and j == i)]
        cand.sort(key=lambda j: (-float(s[i, j]), j))
        out.append(cand[:k])
    nbr = torch.tensor(out)
    return torch.stack([nbr.reshape(-1), torch.arange(n).repeat_interleave(k)])


@pytest.mark.parametrize("metric", ["cosine", "euclidean", "inner"])
@pytest.mark.parametrize("exclude_self", [True, False])
def test_exact_equals_brute_force(metric, exclude_self):
    x = torch.randn(60, 5, dtype=torch.float64)
    got = knn_candidates(x, 4, metric=metric, method="exact", exclude_self=exclude_self)
    assert got.shape == (2, 60 * 4)
    assert torch.equal(got, _reference(x, 4, metric, exclude_self))


@pytest.mark.parametrize("metric", ["euclidean", "inner"])
def test_ties_broken_by_smaller_index(metric):
    # small integer features: every score is exact, many are tied (duplicates too)
    x = torch.randint(0, 3, (50, 3)).float()
    ref = _reference(x, 6, metric, True)
    for bs in (1, 7, 50):
        assert torch.equal(knn_candidates(x, 6, metric=metric, method="exact", block_size=bs), ref)
    # duplicated points: the copy is a neighbour, the node itself is not
    dup = torch.cat([x[:1], x[:1], torch.full((3, 3), 5.0)])
    got = knn_candidates(dup, 1, metric="euclidean", method="exact")
    assert got[0, :2].tolist() == [1, 0]


@pytest.mark.parametrize("block_size", [1, 3, 16, 64, 1000])
def test_block_sizes_identical(block_size):
    x = torch.randn(100, 8)
    full = knn_candidates(x, 5, method="exact", block_size=100)
    assert torch.equal(knn_candidates(x, 5, method="exact", block_size=block_size), full)


def test_exclude_self_and_pyg_convention():
    x = torch.randn(30, 4)
    ei = knn_candidates(x, 3, method="exact")
    src, dst = ei
    assert not bool((src == dst).any())
    assert torch.equal(dst, torch.arange(30).repeat_interleave(3))  # targets: the nodes i
    # with the node itself allowed it is always its own nearest (cosine 1)
    ei = knn_candidates(x, 3, method="exact", exclude_self=False)
    assert torch.equal(ei[0, ::3], torch.arange(30))


def test_argument_errors():
    x = torch.randn(5, 2)
    with pytest.raises(ValueError, match="'k' must be an integer in \\[1, 4\\]"):
        knn_candidates(x, 5)
    with pytest.raises(ValueError, match="'k'"):
        knn_candidates(x, 0)
    assert knn_candidates(x, 5, exclude_self=False, method="exact").shape == (2, 25)
    with pytest.raises(ValueError, match="'k' must be an integer in \\[1, 5\\]"):
        knn_candidates(x, 6, exclude_self=False)
    with pytest.raises(ValueError, match="'metric'"):
        knn_candidates(x, 2, metric="manhattan")
    with pytest.raises(ValueError, match="'method'"):
        knn_candidates(x, 2, method="fast")
    with pytest.raises(ValueError, match="shape \\[N, F\\]"):
        knn_candidates(x[0], 2)
    with pytest.raises(ValueError, match="floating-point"):
        knn_candidates(x.long(), 2)
    with pytest.raises(ValueError, match="'block_size'"):
        knn_candidates(x, 2, block_size=0)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_approx_recall(metric):
    pytest.importorskip("faiss", reason="faiss-cpu is not installed (optional approximate kNN)")
    g = torch.Generator().manual_seed(0)
    # clustered points (as node features are): 20 centres, 1,000 points, 16 dims
    centres = torch.randn(20, 16, generator=g) * 3
    x = centres[torch.randint(0, 20, (1000,), generator=g)] + torch.randn(1000, 16, generator=g)
    k = 10
    exact = knn_candidates(x, k, metric=metric, method="exact")
    approx = knn_candidates(x, k, metric=metric, method="approx")
    assert approx.shape == exact.shape
    assert torch.equal(approx[1], exact[1])
    assert not bool((approx[0] == approx[1]).any())
    n = x.size(0)
    hit = torch.isin(approx[0] * n + approx[1], exact[0] * n + exact[1]).float().mean()
    assert hit >= 0.95, float(hit)


def test_approx_without_faiss_names_the_package(monkeypatch):
    import graphsparse.graph.knn as knn
    monkeypatch.setattr(knn, "_faiss", lambda: None)
    with pytest.raises(ImportError, match="pip install faiss-cpu"):
        knn_candidates(torch.randn(10, 2), 2, method="approx")
    # auto falls back to the exact search (with a warning beyond EXACT_MAX_NODES)
    monkeypatch.setattr(knn, "EXACT_MAX_NODES", 5)
    with pytest.warns(UserWarning, match="faiss is not installed"):
        got = knn_candidates(torch.randn(10, 2), 2, method="auto")
    assert got.shape == (2, 20)


def test_merge_candidates():
    edge_index = torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]])
    cand = torch.tensor([[1, 3, 0, 3], [0, 0, 2, 0]])  # (1->0) exists, (3->0) twice
    merged, is_new = merge_candidates(edge_index, cand, 4)
    ref = coalesce(torch.cat([edge_index, cand], 1), num_nodes=4)
    assert torch.equal(merged, ref)
    old = set(map(tuple, edge_index.t().tolist()))
    assert is_new.tolist() == [tuple(e) not in old for e in merged.t().tolist()]
    assert int(is_new.sum()) == 2  # (0->2) and (3->0)
    merged, is_new = merge_candidates(edge_index, cand, 4, symmetric=True)
    assert {(0, 3), (3, 0), (0, 2), (2, 0)} == {tuple(e) for e in merged[:, is_new].t().tolist()}
    with pytest.raises(ValueError, match="outside \\[0, 4\\)"):
        merge_candidates(edge_index, cand + 1, 4)
    with pytest.raises(ValueError, match="shape \\[2, E\\]"):
        merge_candidates(edge_index, cand[0], 4)


def test_knn_merge_counts_new_edges_on_a_ring():
    # points on a circle: the 2 nearest of each are its ring neighbours
    n = 40
    t = torch.arange(n) * (2 * torch.pi / n)
    x = torch.stack([t.cos(), t.sin()], 1)
    cand = knn_candidates(x, 2, method="exact")
    ring = torch.stack([torch.arange(n), (torch.arange(n) + 1) % n])
    ring = torch.cat([ring, ring.flip(0)], 1)
    merged, is_new = merge_candidates(ring, cand, n)
    assert merged.size(1) == 2 * n and int(is_new.sum()) == 0
    half = ring[:, :n]  # one direction only: the kNN adds the other
    merged, is_new = merge_candidates(half, cand, n)
    assert merged.size(1) == 2 * n and int(is_new.sum()) == n
