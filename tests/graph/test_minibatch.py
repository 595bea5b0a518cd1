"""Learned gates on sampled subgraphs through their edge ids: a batch's
weights equal a GatedAdjacency built on the batch's edges with the same
parameters (per-batch competition groups), the whole graph as one batch
equals full-batch gating, and PyG's loaders drive it."""
import importlib.util

import pytest
import torch
from torch_geometric.data import Data

from graphsparse.graph import GatedAdjacency

CONFIGS = [
    dict(),
    dict(groups="row", normalization="row", gate_self_loops=False, unit_init=True),
    dict(groups="both", normalization="balanced"),
    dict(symmetric=True, normalization="sym"),
    dict(groups="row", normalization="sinkhorn", marginals="degree", gate_self_loops=False,
         unit_init=True),
]


def _graph(n=40, e=220, seed=0):
    g = torch.Generator().manual_seed(seed)
    ei = torch.randint(0, n, (2, e), generator=g)
    ei = ei[:, ei[0] != ei[1]]
    return torch.cat([ei, ei[:, :10]], 1), n                  # with duplicates


def _trained(ei, n, seed=0, **kwargs):
    adj = GatedAdjacency(ei, n, **kwargs).double()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        adj.alpha.copy_(2 * torch.randn(adj.alpha.shape, generator=g, dtype=torch.double))
        for beta in adj.threshold_parameters():
            beta.add_(torch.rand(beta.shape, generator=g, dtype=torch.double))
    return adj


@pytest.mark.parametrize("kwargs", CONFIGS)
def test_the_whole_graph_as_one_batch_equals_full_batch_gating(kwargs):
    ei, n = _graph()
    adj = _trained(ei, n, **kwargs)
    full_index, full_weight = adj()
    index, weight, cand = adj.subgraph(ei, torch.arange(ei.size(1)), torch.arange(n),
                                       return_edge_id=True)
    assert torch.equal(index, full_index)
    torch.testing.assert_close(weight, full_weight)
    torch.testing.assert_close(adj.penalty(), adj.penalty(x=None, edge_index=None))


@pytest.mark.parametrize("kwargs", CONFIGS)
def test_a_batch_equals_an_adjacency_on_its_edges_with_the_same_parameters(kwargs):
    ei, n = _graph(seed=1)
    adj = _trained(ei, n, seed=1, **kwargs)
    data = Data(edge_index=ei, num_nodes=n, e_id=torch.arange(ei.size(1)),
                n_id=torch.arange(n))
    g = torch.Generator().manual_seed(2)
    batch = data.subgraph(torch.randperm(n, generator=g)[: n // 2])
    index, weight, cand = adj.subgraph(batch.edge_index, batch.e_id, batch.n_id,
                                       return_edge_id=True)
    # the reference: the batch's edges as their own candidate graph, with the
    # global logits of the same candidates and the rebased thresholds
    ref = GatedAdjacency(batch.edge_index, batch.num_nodes, **kwargs).double()
    glob = batch.n_id[ref.edge_index]
    keys = adj.edge_index[0] * n + adj.edge_index[1]
    ref_cand = torch.searchsorted(keys, glob[0] * n + glob[1])
    assert torch.equal(adj.edge_index[:, ref_cand], glob)
    with torch.no_grad():
        a = adj.alpha if adj.pair is None else adj.alpha[adj.pair]
        if ref.pair is None:
            ref.alpha.copy_(a[ref_cand])
        else:
            ref.alpha.copy_(a[ref_cand[ref.pair_rep]])
        for mine, theirs, b0, b0_ref in ((adj.beta_row, ref.beta_row, adj.beta0_row,
                                          ref.beta0_row),
                                         (adj.beta_col, ref.beta_col, adj.beta0_col,
                                          ref.beta0_col)):
            if mine is not None:
                theirs.copy_(mine[batch.n_id] - b0[batch.n_id] + b0_ref)
    values = ref.edge_values()
    expected = {(int(s), int(t)): float(v) for (s, t), v in zip(ref.edge_index.t(), values.detach())
                if v > 0}
    got = {(int(s), int(t)): float(v) for (s, t), v in zip(index.t(), weight.detach())}
    assert got.keys() == expected.keys() and len(got) > 0
    for key, value in got.items():
        assert value == pytest.approx(expected[key], rel=1e-10, abs=1e-12)
    assert torch.equal(batch.n_id[index], adj.edge_index[:, cand])


def test_random_node_loader_trains_the_global_gates():
    from torch_geometric.loader import RandomNodeLoader
    ei, n = _graph(seed=3)
    adj = GatedAdjacency(ei, n, groups="row", normalization="row")
    data = Data(edge_index=ei, num_nodes=n, e_id=torch.arange(ei.size(1)),
                n_id=torch.arange(n))
    touched = torch.zeros(adj.num_edges, dtype=torch.bool)
    for batch in RandomNodeLoader(data, num_parts=3, shuffle=True):
        adj.zero_grad()
        index, weight, cand = adj.subgraph(batch.edge_index, batch.e_id, batch.n_id,
                                           return_edge_id=True)
        ((weight * torch.randn_like(weight)).sum() + adj.penalty()).backward()
        assert torch.isfinite(adj.alpha.grad).all()
        hit = adj.alpha.grad != 0
        assert hit.any()
        in_batch = torch.zeros_like(hit)
        in_batch[adj.input_to_cand[batch.e_id]] = True
        in_batch[adj.self_loop_id[batch.n_id]] = True
        assert not (hit & ~in_batch).any()                    # only the batch's candidates
        touched |= hit
    assert touched.float().mean() > 0.3


@pytest.mark.skipif(importlib.util.find_spec("torch_sparse") is None
                    and importlib.util.find_spec("pyg_lib") is None,
                    reason="NeighborLoader needs pyg-lib or torch-sparse, neither is installed")
def test_neighbor_loader_batches():
    from torch_geometric.loader import NeighborLoader
    ei, n = _graph(seed=4)
    adj = GatedAdjacency(ei, n)
    data = Data(edge_index=ei, num_nodes=n)
    for batch in NeighborLoader(data, num_neighbors=[5, 5], batch_size=8):
        index, weight = adj.subgraph(batch.edge_index, batch.e_id, batch.n_id)
        assert index.max() < batch.num_nodes and (weight > 0).all()


def test_bad_batches_name_the_argument():
    ei, n = _graph()
    adj = GatedAdjacency(ei, n)
    with pytest.raises(ValueError, match="e_id"):
        adj.subgraph(ei, torch.arange(3), torch.arange(n))
    with pytest.raises(ValueError, match="n_id"):
        adj.subgraph(ei[:, :5], torch.arange(5), torch.arange(2))   # endpoints outside n_id
