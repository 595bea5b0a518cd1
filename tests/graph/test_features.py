"""Sparse node features: the gated models give the same outputs and weight
gradients on a sparse CSR input as on the dense one, and the sparse input
dropout has dense dropout's distribution."""
import pytest
import torch

import graphsparse
from graphsparse.graph import (GatedAdjacency, GatedGCN, GatedResGCN, feature_dropout,
                               sparse_features)


def _bag_of_words(n=40, f=60, density=0.05, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, f, generator=g) < density).float() * torch.rand(n, f, generator=g)


@pytest.mark.parametrize("cls", [GatedGCN, GatedResGCN])
def test_sparse_input_equals_dense_input(cls):
    from torch_geometric.utils import erdos_renyi_graph
    torch.manual_seed(0)
    x = _bag_of_words()
    xs = sparse_features(x)
    assert xs.layout == torch.sparse_csr
    adj = GatedAdjacency(erdos_renyi_graph(40, 0.2), 40, normalization="row")
    model = cls(60, 8, 3, adjacency=adj).eval()        # eval: no dropout draw
    out, out_s = model(x), model(xs)
    torch.testing.assert_close(out_s, out)
    params = list(model.parameters())
    g = torch.randn_like(out)
    for a, b in zip(torch.autograd.grad((out * g).sum(), params),
                    torch.autograd.grad((model(xs) * g).sum(), params), strict=True):
        torch.testing.assert_close(b, a)
    model.train()                                        # a training step runs too
    model(xs).sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in params if p.grad is not None)


def test_sparse_dropout_keeps_zeros_and_the_expectation():
    x = _bag_of_words(n=200, f=300, density=0.1, seed=1)
    xs = x.to_sparse_csr()
    torch.manual_seed(0)
    draws = torch.stack([feature_dropout(xs, 0.4, True).to_dense() for _ in range(400)])
    assert (draws[:, x == 0] == 0).all()                              # zeros stay zero
    nz = x != 0
    kept = (draws[:, nz] != 0).float().mean()
    assert abs(float(kept) - 0.6) < 0.01                               # kept with 1 - p
    vals = draws[:, nz]
    assert torch.allclose(vals[vals != 0], (x[nz] / 0.6).expand_as(vals)[vals != 0])
    assert torch.equal(feature_dropout(xs, 0.4, False).to_dense(), x)  # eval: identity
    torch.manual_seed(3)
    dense = feature_dropout(x, 0.4, True)
    torch.manual_seed(3)
    assert torch.equal(dense, torch.nn.functional.dropout(x, 0.4, True))  # dense: F.dropout


def test_sparse_features_converts_only_sparse_inputs():
    x = _bag_of_words(density=0.05)
    assert sparse_features(x).layout == torch.sparse_csr
    dense = torch.randn(10, 5)
    assert sparse_features(dense) is dense
    assert sparse_features(x.to_sparse()).layout == torch.sparse_csr
    torch.testing.assert_close(sparse_features(x.to_sparse()).to_dense(), x)
    with pytest.raises(ValueError, match="max_density"):
        sparse_features(x, max_density=2.0)
    assert graphsparse.sparse_features is sparse_features
