"""Tests that kill the mutants of graphsparse/graph/_inputs.py and
graphsparse/graph/weighted.py that the other tests let survive
(tools/mutation.sh): the candidate construction against a plain-Python
reference for every flag, the input-format conversions, and the weight
wrapper's checks and restored layer state."""
import warnings

import pytest
import torch
from torch_geometric.nn import GATConv, GCNConv, GraphConv, SAGEConv

from graphsparse.core import init_beta
from graphsparse.graph._inputs import as_edge_list, build_candidates, first_of_each
from graphsparse.graph.weighted import EdgeWeighted, check_weight_consumers

# torch's notes on its beta sparse layouts
pytestmark = pytest.mark.filterwarnings("ignore:Sparse")


def _reference(ei, w, n, add_self_loops, symmetric, gate_self_loops, extra):
    """The candidates as a dict {(src, dst): weight}, built edge by edge."""
    edges = {}
    for k, (s, d) in enumerate(ei.t().tolist()):
        edges[(s, d)] = edges.get((s, d), 0.0) + (1.0 if w is None else float(w[k]))
    if extra is not None:
        for s, d in extra.t().tolist():
            edges.setdefault((s, d), 1.0)
    if symmetric:
        for (s, d), v in list(edges.items()):
            edges[(d, s)] = max(v, edges.get((d, s), -float("inf")))
    if add_self_loops:
        for i in range(n):
            edges.setdefault((i, i), 1.0)
    keys = sorted(edges)
    counted = [(s, d) for s, d in keys if gate_self_loops or s != d]
    indeg = torch.tensor([sum(d == i for _, d in counted) for i in range(n)])
    outdeg = torch.tensor([sum(s == i for s, _ in counted) for i in range(n)])
    return keys, [edges[k] for k in keys], init_beta(indeg), init_beta(outdeg)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("add_self_loops", [False, True])
@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("gate_self_loops", [False, True])
@pytest.mark.parametrize("weighted,with_extra", [(False, False), (True, False), (True, True)])
def test_candidates_equal_the_edge_by_edge_reference(seed, add_self_loops, symmetric,
                                                     gate_self_loops, weighted, with_extra):
    g = torch.Generator().manual_seed(seed)
    n = 7
    ei = torch.randint(0, n, (2, 18), generator=g)              # duplicates and self-loops
    w = torch.rand(18, generator=g) + 0.5 if weighted else None
    extra = torch.randint(0, n, (2, 6), generator=g) if with_extra else None
    c = build_candidates(ei, w, None if seed else n, add_self_loops, symmetric,
                         gate_self_loops, "test", extra=extra)
    keys, weights, b_row, b_col = _reference(ei, w, n if seed == 0 else int(ei.max()) + 1,
                                             add_self_loops, symmetric, gate_self_loops, extra)
    assert c.num_nodes == (n if seed == 0 else int(ei.max()) + 1)
    assert [tuple(e) for e in c.edge_index.t().tolist()] == keys
    assert torch.equal(c.row, c.edge_index[1]) and torch.equal(c.col, c.edge_index[0])
    if w is None:
        assert c.weight is None
    else:
        torch.testing.assert_close(c.weight, torch.tensor(weights))
    torch.testing.assert_close(c.beta0_row, b_row)
    torch.testing.assert_close(c.beta0_col, b_col)
    # every input edge maps to its candidate; every candidate to its first input edge
    for k, (s, d) in enumerate(ei.t().tolist()):
        assert keys[int(c.input_to_cand[k])] == (s, d)
    for j, key in enumerate(keys):
        first = [k for k, e in enumerate(ei.t().tolist()) if tuple(e) == key]
        assert int(c.input_id[j]) == (first[0] if first else -1)
    if symmetric:
        pairs = sorted({(min(s, d), max(s, d)) for s, d in keys})
        for j, (s, d) in enumerate(keys):
            assert pairs[int(c.pair[j])] == (min(s, d), max(s, d))
        for p, j in enumerate(c.pair_rep.tolist()):
            assert j == min(i for i, (s, d) in enumerate(keys)
                            if (min(s, d), max(s, d)) == pairs[p])
    else:
        assert c.pair is None and c.pair_rep is None


def test_first_of_each_and_its_empty_case():
    group = torch.tensor([2, 0, 2, 1, 0, 3, 1])
    assert first_of_each(group).tolist() == [1, 3, 0, 5]
    assert first_of_each(torch.tensor([0])).tolist() == [0]
    assert first_of_each(torch.zeros(0, dtype=torch.long)).tolist() == []


def test_extra_candidates_are_checked():
    ei = torch.tensor([[0, 1], [1, 2]])
    for bad in (torch.tensor([0, 1]), torch.zeros(3, 2, dtype=torch.long),
                torch.zeros(1, 2, dtype=torch.long), [[0], [1]]):
        with pytest.raises(ValueError, match="'candidates' of shape"):
            build_candidates(ei, None, 3, False, False, True, "test", extra=bad)


def _dense_coo(n=4):
    ei = torch.tensor([[0, 1, 3, 2], [1, 2, 0, 2]])
    w = torch.tensor([0.5, 2.0, 3.0, 4.0])
    return ei, w, torch.sparse_coo_tensor(ei, w, (n, n))


@pytest.mark.parametrize("layout", ["coo", "csr", "csc"])
def test_sparse_matrix_becomes_index_and_values(layout):
    ei, w, coo = _dense_coo()
    s = {"coo": coo, "csr": coo.to_sparse_csr(), "csc": coo.to_sparse_csc()}[layout]
    got_ei, got_w, n = as_edge_list(s, None, None, "test")
    order = (ei[0] * 4 + ei[1]).argsort()
    assert torch.equal(got_ei, ei[:, order]) and torch.equal(got_w, w[order]) and n == 4
    assert as_edge_list(s, None, 9, "test")[2] == 9                # an explicit count wins
    with pytest.raises(ValueError, match="torch.sparse matrix and an 'edge_weight'"):
        as_edge_list(s, w, None, "test")


def test_sparse_matrix_of_vectors_is_refused():
    ei = torch.tensor([[0, 1], [1, 0]])
    s = torch.sparse_coo_tensor(ei, torch.ones(2, 3), (2, 2, 3))
    with pytest.raises(ValueError, match="scalar values"):
        as_edge_list(s, None, None, "test")


def test_plain_tensors_and_edge_features():
    ei = torch.tensor([[0, 1], [1, 0]])
    w = torch.tensor([1.0, 2.0])
    got = as_edge_list(ei, w, 5, "test")
    assert got[0] is ei and got[1] is w and got[2] == 5
    assert as_edge_list(ei, None, None, "test")[1:] == (None, None)
    with pytest.raises(ValueError, match="multi-dimensional edge features"):
        as_edge_list(ei, torch.ones(2, 3), None, "test")
    assert as_edge_list(ei, torch.ones(2, 1).squeeze(1), None, "test")[1].shape == (2,)


def test_edge_index_subclass_becomes_a_plain_tensor():
    from torch_geometric import EdgeIndex
    ei = EdgeIndex(torch.tensor([[0, 1, 1], [1, 0, 2]]), sparse_size=(3, 3))
    got, _, _ = as_edge_list(ei, None, None, "test")
    assert type(got) is torch.Tensor and got.tolist() == [[0, 1, 1], [1, 0, 2]]


# ---------------------------------------------------------------- weighted.py
def test_wrapper_refuses_what_it_cannot_weight():
    with pytest.raises(ValueError, match="expects 'model' to be an nn.Module"):
        EdgeWeighted(lambda x: x)
    with pytest.raises(ValueError, match="no torch_geometric MessagePassing"):
        EdgeWeighted(torch.nn.Linear(3, 3))
    wrapped = EdgeWeighted(SAGEConv(3, 2))                       # no edge_weight: fine wrapped
    ei = torch.tensor([[0, 1], [1, 0]])
    x = torch.randn(2, 3)
    for bad in (torch.ones(3), torch.ones(2, 1), torch.ones(1, 2)):
        with pytest.raises(ValueError, match=r"'edge_weight' of shape \[E\] = \[2\]"):
            wrapped(x, ei, bad)


def test_wrapper_restores_the_layers_state_even_after_an_error():
    conv = SAGEConv(3, 2)
    before = (conv.explain, conv._edge_mask, conv._loop_mask, conv._apply_sigmoid)
    wrapped = EdgeWeighted(conv)
    ei = torch.tensor([[0, 1], [1, 0]])
    wrapped(torch.randn(2, 3), ei, torch.rand(2))
    assert (conv.explain, conv._edge_mask, conv._loop_mask, conv._apply_sigmoid) == before
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        wrapped(torch.randn(2, 5), ei, torch.rand(2))            # wrong feature size
    assert (conv.explain, conv._edge_mask, conv._loop_mask, conv._apply_sigmoid) == before


def test_wrapper_with_input_self_loops_in_gat():
    """GATConv replaces the input's self-loops by its own (weight one): the
    wrapper's loop mask keeps the weights of the other edges, in order."""
    torch.manual_seed(0)
    conv = GATConv(3, 2)
    ei = torch.tensor([[0, 2, 1, 1, 2], [0, 1, 0, 2, 2]])           # self-loops 0 -> 0, 2 -> 2
    w = torch.tensor([7.0, 0.5, 2.0, 0.0, 9.0])
    x = torch.randn(3, 3)
    wrapped = EdgeWeighted(conv)
    got = wrapped(x, ei, w)
    keep = ei[0] != ei[1]
    torch.testing.assert_close(got, wrapped(x, ei[:, keep], w[keep]))
    torch.testing.assert_close(got, wrapped(x, ei, torch.where(keep, w, -1.0)))
    assert not torch.allclose(got, wrapped(x, ei, torch.where(keep, w.flip(0), w)))


class _Two(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = SAGEConv(3, 4), GraphConv(4, 2)
        self.own_resets = 0

    def reset_parameters(self):
        self.own_resets += 1

    def forward(self, x, edge_index):
        return self.b(self.a(x, edge_index).relu(), edge_index)


def test_wrapper_reset_parameters_resets_every_inner_layer_once():
    model = _Two()
    wrapped = EdgeWeighted(model)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(7.0)
    wrapped.reset_parameters()
    assert model.own_resets == 0                    # the model's own reset is not what runs
    for name, p in model.named_parameters():
        if p.numel() > 1:
            assert not bool((p == 7.0).all()), name


def test_weight_consumers_checks_and_warnings():
    GCN = GCNConv
    with pytest.raises(ValueError, match="GCNConv 'model' has cached=True"):
        check_weight_consumers(GCN(3, 2, cached=True, normalize=False))
    with pytest.raises(ValueError, match=r"GCNConv '0' has cached=True"):
        check_weight_consumers(torch.nn.ModuleList([GCN(3, 2, cached=True, normalize=False)]))
    with pytest.warns(UserWarning, match="normalize=True") as rec:
        EdgeWeighted(GCN(3, 2))
    assert rec[0].filename == __file__              # points at the caller's line
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_weight_consumers(GCN(3, 2, normalize=False))          # fine: no warning
        check_weight_consumers(torch.nn.Sequential(torch.nn.Linear(3, 3)))   # no layer at all
        check_weight_consumers(_Two(), wrapped=True)
        check_weight_consumers(GraphConv(3, 2))
    with pytest.raises(ValueError, match="SAGEConv 'a' takes no 'edge_weight'"):
        check_weight_consumers(_Two())


def test_wrapper_accepts_graphs_with_more_than_256_edges():
    """Sizes compared by value: small ints are shared objects, large ones not."""
    g = torch.Generator().manual_seed(0)
    n = 40
    ei = torch.randint(0, n, (2, 300), generator=g)
    x, w = torch.randn(n, 3, generator=g), torch.rand(300, generator=g)
    conv = GraphConv(3, 2)
    torch.testing.assert_close(EdgeWeighted(conv)(x, ei, w), conv(x, ei, w))


def test_wrapper_refuses_a_scalar_weight_even_for_one_edge():
    wrapped = EdgeWeighted(GraphConv(3, 2))
    with pytest.raises(ValueError, match=r"'edge_weight' of shape \[E\] = \[1\] \(got \(\)\)"):
        wrapped(torch.randn(2, 3), torch.tensor([[0], [1]]), torch.tensor(0.5))
