import pytest
import torch
from torch_geometric.nn.conv.gcn_conv import gcn_norm

from graphsparse.graph import row_norm, sym_norm

NORMS = {"row": row_norm, "sym": sym_norm}


@pytest.mark.parametrize("name", NORMS)
def test_matches_dense_forward_and_gradient(name, dense, graph):
    n = 12
    edge_index = graph(n, 0.3, self_loops=False)
    edge_index = edge_index[:, edge_index[1] != 3]            # an empty row
    w = torch.rand(edge_index.size(1), dtype=torch.float64) + 0.1
    out = NORMS[name](edge_index, w, n)
    ref = dense.entries(dense.normalize(dense.adjacency(edge_index, w, n), name), edge_index)
    torch.testing.assert_close(out, ref)
    torch.autograd.gradcheck(lambda v: NORMS[name](edge_index, v, n), (w.requires_grad_(),))


def test_sym_norm_is_gcn_norm(graph):
    n = 15
    edge_index = graph(n, 0.3)
    w = torch.rand(edge_index.size(1))
    _, ref = gcn_norm(edge_index, w, n, add_self_loops=False)
    torch.testing.assert_close(sym_norm(edge_index, w, n), ref)


def test_rows_sum_to_one(graph):
    n = 20
    edge_index = graph(n, 0.2)
    out = row_norm(edge_index, torch.rand(edge_index.size(1)) + 0.01, n)
    sums = torch.zeros(n).index_add(0, edge_index[1], out)
    torch.testing.assert_close(sums, torch.ones(n))


@pytest.mark.parametrize("name", NORMS)
def test_zero_rows_and_isolated_nodes_have_finite_gradients(name, graph):
    n = 10
    edge_index = graph(n, 0.4, self_loops=False)
    edge_index = edge_index[:, (edge_index < 8).all(0)]      # nodes 8, 9 isolated
    w = torch.rand(edge_index.size(1))
    w[edge_index[1] == 2] = 0.0                               # a dead row
    w[edge_index[0] == 5] = 0.0                               # a dead column
    w.requires_grad_()
    out = NORMS[name](edge_index, w, n)
    out.pow(2).sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(w.grad).all()
    assert (out[w.detach() == 0] == 0).all()


def test_default_weight_and_num_nodes():
    edge_index = torch.tensor([[0, 1, 2], [1, 1, 1]])
    torch.testing.assert_close(row_norm(edge_index), torch.full((3,), 1 / 3))
