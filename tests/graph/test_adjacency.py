import networkx as nx
import pytest
import torch
from torch_geometric.data import Data

from graphsparse.graph import EdgeScorer, GatedAdjacency
from graphsparse.testing import devices

NORMS = ["sinkhorn", "balanced", "row", "sym", "none"]


def _randomize(adj, seed=0):
    """Random logits and raised thresholds, so that some gates are exactly zero."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        adj.alpha.copy_(3 * torch.randn(adj.alpha.shape, generator=g))
        for beta in (adj.beta_row, adj.beta_col):
            if beta is not None:
                beta.add_(1.5 + torch.rand(beta.shape, generator=g))
    return adj


def _dense_values(adj, dense):
    """The adjacency's weights recomputed densely from its parameters."""
    ei, n = adj.edge_index, adj.num_nodes
    alpha = adj.alpha if adj.pair is None else adj.alpha[adj.pair]
    mask = dense.adjacency(ei, torch.ones(ei.size(1), dtype=alpha.dtype), n)
    a_alpha = dense.adjacency(ei, alpha, n)
    beta_row = adj.beta_row if adj.beta_row is not None else alpha.new_zeros(n)
    beta_col = adj.beta_row if adj.symmetric else adj.beta_col
    beta_col = beta_col if beta_col is not None else alpha.new_zeros(n)
    a = dense.gate(a_alpha, mask, beta_row, beta_col, adj.groups)
    if adj.marginals == "degree":   # toward the mask's degrees, then D^-1/2 . D^-1/2
        d = mask.sum(1)
        d = torch.where(d > 0, d, torch.ones_like(d))
        a = dense.sinkhorn(a, adj.num_iters, adj.normalization == "balanced",
                           marginals=torch.stack([d, d]))
        return dense.entries(d[:, None] ** -0.5 * a * d[None, :] ** -0.5, ei)
    return dense.entries(dense.normalize(a, adj.normalization, adj.num_iters), ei)


@pytest.mark.parametrize("normalization,marginals", [(n, "uniform") for n in NORMS]
                         + [("sinkhorn", "degree"), ("balanced", "degree")])
@pytest.mark.parametrize("groups,symmetric", [("row", False), ("col", False), ("both", False),
                                              ("both", True)])
def test_matches_dense_reference(normalization, marginals, groups, symmetric, dense, graph):
    n = 14
    ei = graph(n, 0.25, self_loops=False)
    adj = GatedAdjacency(ei, n, groups=groups, normalization=normalization, num_iters=5,
                         symmetric=symmetric, marginals=marginals)
    adj = _randomize(adj.double())
    values = adj.edge_values()
    ref = _dense_values(adj, dense)
    torch.testing.assert_close(values, ref)
    assert (values == 0).any() and (values > 0).any()
    g = torch.randn_like(values)
    grads = torch.autograd.grad((values * g).sum(), list(adj.parameters()))
    grads_ref = torch.autograd.grad((ref * g).sum(), list(adj.parameters()))
    for a, b in zip(grads, grads_ref):
        torch.testing.assert_close(a, b)
    assert all(torch.isfinite(a).all() for a in grads)
    if marginals != "uniform":   # the marginals matter
        uniform = GatedAdjacency(ei, n, groups=groups, normalization=normalization,
                                 num_iters=5, symmetric=symmetric).double()
        uniform.load_state_dict(adj.state_dict())
        assert not torch.allclose(uniform.edge_values(), values)


def test_degree_marginals_start_at_the_gcn_propagation(graph):
    # Unit gates (unit_init, no noise), self-loops out of the gates, an
    # undirected graph: the candidate matrix already has row and column sums
    # d, so the output is D^-1/2 (A + I) D^-1/2, GCN's matrix.
    from torch_geometric.nn.conv.gcn_conv import gcn_norm
    n = 20
    ei = graph(n, 0.2, directed=False, self_loops=False)
    adj = GatedAdjacency(ei, n, groups="row", normalization="sinkhorn", marginals="degree",
                         unit_init=True, gate_self_loops=False).double()
    assert "marginals='degree'" in repr(adj)
    index, weight = adj()
    ref_index, ref_weight = gcn_norm(ei, None, n, add_self_loops=True, dtype=torch.float64)
    ref = {(int(a), int(b)): float(w) for (a, b), w in zip(ref_index.t(), ref_weight)}
    got = {(int(a), int(b)): float(w) for (a, b), w in zip(index.t(), weight.detach())}
    assert got.keys() == ref.keys()
    for key, w in got.items():
        assert w == pytest.approx(ref[key], rel=1e-12)


@pytest.mark.parametrize("num_iters", [1, 3])
def test_degree_marginals_keep_the_spectral_radius_at_one(num_iters, dense, graph):
    # After the column step A^T sqrt(d) = sqrt(d): a positive eigenvector, so
    # the spectral radius is exactly one (Collatz-Wielandt) however the gates
    # pruned; toward fixed GCN row sums it grew to 1.5 (hubs' self-loops).
    n = 16
    ei = graph(n, 0.3, directed=False, self_loops=False)
    adj = _randomize(GatedAdjacency(ei, n, groups="row", normalization="sinkhorn",
                                    marginals="degree", num_iters=num_iters,
                                    gate_self_loops=False).double(), seed=num_iters)
    values = adj.edge_values()
    assert (values == 0).any()
    a = dense.adjacency(adj.edge_index, values.detach(), n)
    d = adj.sinkhorn_degrees
    torch.testing.assert_close(a.t() @ d.sqrt(), d.sqrt())
    torch.testing.assert_close(torch.linalg.eigvals(a).abs().max(),
                               torch.tensor(1.0, dtype=torch.float64))


@pytest.mark.parametrize("normalization", ["sinkhorn", "balanced"])
def test_gradcheck(normalization, graph):
    n = 8
    adj = GatedAdjacency(graph(n, 0.3), n, num_iters=3, normalization=normalization)
    adj = _randomize(adj.double())
    names = [name for name, _ in adj.named_parameters()]

    def weights(*params):
        return torch.func.functional_call(adj, dict(zip(names, params)), ())[1]

    params = tuple(p.detach().clone().requires_grad_() for p in adj.parameters())
    torch.autograd.gradcheck(weights, params)


def test_forward_drops_exact_zeros(graph):
    n = 20
    adj = _randomize(GatedAdjacency(graph(n, 0.2), n))
    values = adj.edge_values()
    edge_index, weight = adj()
    keep = values > 0
    assert 0 < int(keep.sum()) < values.numel()
    assert torch.equal(edge_index, adj.edge_index[:, keep])
    torch.testing.assert_close(weight, values[keep])
    assert (weight > 0).all()
    assert adj.edge_sparsity() == pytest.approx(float((~keep).float().mean()))
    kept = torch.bincount(adj.edge_index[1][keep], minlength=n)
    assert torch.equal(adj.kept_per_row(), kept) and adj.kept_per_row().dtype == torch.long
    ei, ew = adj.export()
    assert not ew.requires_grad and torch.equal(ei, edge_index)


def test_init_follows_the_paper(graph):
    n = 12
    adj = GatedAdjacency(graph(n, 0.3), n)
    assert (adj.alpha == 0).all()
    in_degree = torch.bincount(adj.edge_index[1], minlength=n).float()
    torch.testing.assert_close(adj.beta_row, -torch.log(in_degree ** 2 + in_degree - 1))
    assert adj.edge_sparsity() == 0.0                 # every candidate starts alive


def test_candidates_self_loops_and_edge_order(graph):
    n = 10
    edge_index = graph(n, 0.3, self_loops=False)
    adj = GatedAdjacency(edge_index, n)
    loops = adj.edge_index[0] == adj.edge_index[1]
    assert int(loops.sum()) == n and adj.num_edges == edge_index.size(1) + n
    assert GatedAdjacency(edge_index, n, add_self_loops=False).num_edges == edge_index.size(1)
    perm = torch.randperm(edge_index.size(1))
    shuffled = GatedAdjacency(torch.cat([edge_index[:, perm], edge_index], 1), n)  # duplicates too
    assert torch.equal(shuffled.edge_index, adj.edge_index)
    data = Data(edge_index=edge_index, num_nodes=n)
    assert torch.equal(GatedAdjacency.from_data(data).edge_index, adj.edge_index)


@pytest.mark.parametrize("normalization", ["sym", "balanced", "none"])
def test_symmetric_ties_gates(normalization, dense, graph):
    n = 12
    edge_index = graph(n, 0.3, directed=True, self_loops=False)
    adj = _randomize(GatedAdjacency(edge_index, n, symmetric=True, normalization=normalization))
    num_undirected = int((adj.edge_index[0] <= adj.edge_index[1]).sum())
    assert adj.alpha.numel() == num_undirected and adj.beta_col is None
    a = dense.adjacency(adj.edge_index, adj.edge_values().detach(), n)
    torch.testing.assert_close(a, a.t())
    graph_nx = adj.to_networkx()
    assert isinstance(graph_nx, nx.Graph) and not graph_nx.is_directed()
    assert graph_nx.number_of_edges() == int((adj.edge_index[0] <= adj.edge_index[1])[
        adj.edge_values() > 0].sum())
    for i, j, w in graph_nx.edges(data="weight"):
        assert w == pytest.approx(float(a[i, j]))


def test_to_networkx_directed(graph):
    n = 9
    adj = _randomize(GatedAdjacency(graph(n, 0.4), n))
    g = adj.to_networkx()
    ei, ew = adj.export()
    assert isinstance(g, nx.DiGraph) and g.number_of_nodes() == n
    assert g.number_of_edges() == ei.size(1)
    j, i = int(ei[0, 0]), int(ei[1, 0])
    assert g[j][i]["weight"] == pytest.approx(float(ew[0]))


@pytest.mark.parametrize("normalization", ["sinkhorn", "balanced"])
def test_dead_rows_columns_and_isolated_nodes_are_finite(normalization, graph):
    n = 12
    edge_index = graph(n, 0.3, self_loops=False)
    edge_index = edge_index[:, (edge_index < 10).all(0)]     # nodes 10, 11 isolated
    adj = GatedAdjacency(edge_index, n, normalization=normalization, add_self_loops=False)
    with torch.no_grad():
        adj.beta_row[3] = 20.0                                 # row 3 loses everything
        adj.beta_col[5] = 20.0                                 # column 5 too
    values = adj.edge_values()
    (adj.penalty() + (values * torch.randn_like(values)).sum()).backward()
    assert torch.isfinite(values).all()
    assert all(torch.isfinite(p.grad).all() for p in adj.parameters())
    assert (values[adj.edge_index[1] == 3] == 0).all()
    assert (values[adj.edge_index[0] == 5] == 0).all()
    assert int(adj.kept_per_row()[3]) == 0


def test_penalty_matches_dense(dense, graph):
    n = 10
    adj = _randomize(GatedAdjacency(graph(n, 0.3), n).double())
    ref = dense.penalty(dense.adjacency(adj.edge_index, adj.edge_values(), n))
    torch.testing.assert_close(adj.penalty(0.5), ref)


@pytest.mark.parametrize("kind", ["dot", "mlp"])
def test_scorer(kind, graph):
    n, f = 16, 5
    edge_index = graph(n, 0.3)
    x = torch.randn(n, f)
    scorer = EdgeScorer(f, hidden_channels=8, kind=kind)
    adj = GatedAdjacency(edge_index, n, scorer=scorer)
    free = GatedAdjacency(edge_index, n)
    # Logits start at zero and thresholds at the paper's init: same as free logits.
    torch.testing.assert_close(adj.edge_values(x), free.edge_values())
    assert adj.alpha is None and adj.beta_row.dim() == 0
    params = {id(p) for p in adj.gate_parameters()}
    assert {id(p) for p in scorer.parameters()} <= params
    # The score is symmetric and the scorer applies to another graph.
    with torch.no_grad():
        for p in scorer.parameters():
            p.normal_()
    ei2 = graph(7, 0.5, seed=1)
    s = scorer(x[:7], ei2)
    torch.testing.assert_close(s, scorer(x[:7], ei2.flip(0)))
    out_ei, out_w = adj(x[:7], ei2)
    assert out_ei.max() < 7 and torch.isfinite(out_w).all()
    (adj.penalty(0.5, x) + out_w.sum()).backward()
    assert all(p.grad is not None for p in scorer.parameters())


def test_reset_parameters_restores_init(graph):
    n = 10
    adj = GatedAdjacency(graph(n, 0.3), n)
    before = [p.detach().clone() for p in adj.parameters()]
    _randomize(adj).reset_parameters()
    for a, b in zip(before, adj.parameters()):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("normalization", NORMS)
def test_runs_on_device(device, normalization, graph):
    n = 15
    adj = _randomize(GatedAdjacency(graph(n, 0.3), n, normalization=normalization)).to(device)
    edge_index, weight = adj()
    (weight.sum() + adj.penalty()).backward()
    assert edge_index.device.type == device and weight.device.type == device
    assert torch.isfinite(adj.alpha.grad).all()


EI = torch.tensor([[0, 1, 2], [1, 2, 0]])


@pytest.mark.parametrize("name,args,kwargs", [
    ("edge_index", (EI.t().contiguous(), 3), {}),
    ("edge_index", (EI.float(), 3), {}),
    ("edge_index", (torch.tensor([[0, -1], [1, 2]]), 3), {}),
    ("edge_index", (EI, 2), {}),
    ("num_iters", (EI, 3), dict(num_iters=0)),
    ("groups", (EI, 3), dict(groups="rows")),
    ("normalization", (EI, 3), dict(normalization="softmax")),
    ("activation", (EI, 3), dict(activation="tanh")),
    ("symmetric", (EI, 3), dict(symmetric=True, groups="row")),
    ("scorer", (EI, 3), dict(scorer=lambda x, e: x)),
    ("marginals", (EI, 3), dict(marginals="gcn")),
    ("marginals", (EI, 3), dict(marginals="degree", normalization="row")),
])
def test_bad_construction_names_the_argument(name, args, kwargs):
    with pytest.raises(ValueError, match=name):
        GatedAdjacency(*args, **kwargs)


def test_bad_call_names_the_argument():
    adj = GatedAdjacency(EI, 3)
    with pytest.raises(ValueError, match="'x'"):
        adj(torch.randn(4, 2))                                  # num_nodes mismatch
    with pytest.raises(ValueError, match="scorer"):
        adj(torch.randn(3, 2), EI)                              # free logits, other graph
    scored = GatedAdjacency(EI, 3, scorer=EdgeScorer(2, 4))
    with pytest.raises(ValueError, match="'x'"):
        scored()
    with pytest.raises(ValueError, match="'x'"):
        scored(torch.randn(3, 5))                               # wrong feature size


def _count_evaluations(adj, monkeypatch):
    calls = []
    values = adj._values
    monkeypatch.setattr(adj, "_values", lambda *a: calls.append(1) or values(*a))
    return calls


def test_penalty_reuses_the_forward_pass_safely(monkeypatch, graph):
    import copy
    n = 12
    adj = _randomize(GatedAdjacency(graph(n, 0.3), n))
    fresh = adj.penalty()
    grads_fresh = torch.autograd.grad(fresh, list(adj.parameters()))
    calls = _count_evaluations(adj, monkeypatch)

    _, weight = adj()
    pen = adj.penalty()                              # reused: one evaluation in all
    assert len(calls) == 1
    torch.testing.assert_close(pen, fresh)
    for a, b in zip(torch.autograd.grad(pen, list(adj.parameters())), grads_fresh):
        torch.testing.assert_close(a, b)

    _, weight = adj()
    weight.sum().backward()                          # graph spent: recompute
    adj.penalty().backward()
    assert len(calls) == 3

    adj()
    with torch.no_grad():
        adj.alpha.add_(1.0)                           # parameters changed: recompute
    changed = adj.penalty()
    assert len(calls) == 5 and not torch.allclose(changed, fresh)
    adj(); adj.penalty(); adj.penalty()              # reuse is used once
    assert len(calls) == 7
    adj()
    copy.deepcopy(adj)                               # the live graph is not copied


@pytest.mark.parametrize("normalization", NORMS)
def test_extreme_logits_keep_gradients_finite(normalization, graph):
    # Logits far in the sigmoid's tail (a scorer's dot products reach them
    # within a few steps) must not turn Sinkhorn's gradient into inf or NaN.
    n = 30
    adj = GatedAdjacency(graph(n, 0.2), n, normalization=normalization)
    with torch.no_grad():
        adj.alpha.copy_(200 * torch.randn(adj.alpha.shape))
        adj.alpha[adj.edge_index[1] < 5] = -150.0                 # whole rows in the tail
    values = adj.edge_values()
    (adj.penalty() + (values * torch.randn_like(values)).sum()).backward()
    assert torch.isfinite(values).all()
    assert all(torch.isfinite(p.grad).all() for p in adj.parameters())


def test_sparsity_counts_only_gated_candidates(graph):
    """Always-on self-loops (gate_self_loops=False) are not candidates of any
    competition: the sparsity is the fraction of the *gated* edges at zero."""
    n = 16
    adj = _randomize(GatedAdjacency(graph(n, 0.3), n, gate_self_loops=False))
    values = adj.edge_values()
    loops = adj.edge_index[0] == adj.edge_index[1]
    assert loops.any() and (values[loops] > 0).all()
    assert torch.equal(adj.gated_mask, ~loops)
    expected = float((values[~loops] == 0).float().mean())
    assert 0 < expected < 1
    assert adj.edge_sparsity() == pytest.approx(expected)
    full = GatedAdjacency(graph(n, 0.3), n)               # the paper: loops compete too
    assert full.gated_mask.all()


@pytest.mark.parametrize("norm", ["sinkhorn", "balanced", "row"])
def test_identity_mix_is_a_convex_mix_that_keeps_the_sums(norm):
    torch.manual_seed(0)
    n = 25
    ei = torch.randint(0, n, (2, 120))
    kw = dict(groups="both", normalization=norm, num_iters=200, gate_self_loops=False)
    plain = _randomize(GatedAdjacency(ei, n, **kw).double())
    mixed = GatedAdjacency(ei, n, identity_mix=0.3, **kw).double()
    mixed.load_state_dict({**plain.state_dict(), "mix_logit": mixed.mix_logit.detach()})
    t = torch.sigmoid(mixed.mix_logit)
    assert float(t.detach()) == pytest.approx(0.3)
    s, m = plain.edge_values(), mixed.edge_values()
    loop = plain.edge_index[0] == plain.edge_index[1]
    torch.testing.assert_close(m, t * s + (1 - t) * loop.double())
    # exact zeros stay zero; every sum moves to t * (its sum in S) + (1 - t): a
    # stochastic S stays stochastic
    assert torch.equal(m[~loop] == 0, s[~loop] == 0) and (s[~loop] == 0).any()
    assert int(loop.sum()) == n                     # one self-loop per node
    for idx in plain.edge_index:
        sum_m = torch.zeros(n, dtype=m.dtype).index_add(0, idx, m)
        sum_s = torch.zeros(n, dtype=s.dtype).index_add(0, idx, s)
        torch.testing.assert_close(sum_m, t * sum_s + (1 - t))
    if norm == "row":
        torch.testing.assert_close(torch.zeros(n, dtype=m.dtype).index_add(
            0, plain.edge_index[1], m), torch.ones(n, dtype=m.dtype))
    m[~loop].sum().backward()
    assert mixed.mix_logit.grad is not None and mixed.mix_logit.grad != 0
    assert any(p is mixed.mix_logit for p in mixed.logit_parameters())


def test_identity_mix_arguments():
    ei = torch.tensor([[0, 1], [1, 0]])
    for bad in (0.0, 1.0, -0.2, True, "0.5"):
        with pytest.raises(ValueError, match="'identity_mix'"):
            GatedAdjacency(ei, 2, identity_mix=bad)
    with pytest.raises(ValueError, match="add_self_loops"):
        GatedAdjacency(ei, 2, identity_mix=0.5, add_self_loops=False)


def test_dropping_zeros_reuses_the_stored_list_and_its_pattern():
    # nothing zero: the stored edge list itself (its CSR pattern is cached);
    # zeros: the surviving edges, whose pattern is derived from the stored
    # one (no sort), with the products of a fresh copy of the same edges
    from graphsparse.graph import _ops
    from torch_geometric.utils import erdos_renyi_graph
    torch.manual_seed(0)
    adj = GatedAdjacency(erdos_renyi_graph(30, 0.2), 30, normalization="row", unit_init=True)
    ei, w = adj()
    assert ei is adj.edge_index and int((w == 0).sum()) == 0
    with torch.no_grad():
        adj.alpha[::3] = -50.0                       # gate every third candidate off
    ei, w = adj()
    keep = adj.last_edge_values > 0
    assert not bool(keep.all()) and torch.equal(ei, adj.edge_index[:, keep])
    assert id(ei) in _ops._PATTERNS                  # derived, not yet built by a product
    h = torch.randn(30, 4, dtype=w.dtype, requires_grad=True)
    out = _ops.weighted_aggregate(h, ei, w)
    ref = _ops.weighted_aggregate(h, ei.clone(), w)
    torch.testing.assert_close(out, ref)
    g = torch.randn_like(out)
    for a, b in zip(torch.autograd.grad(out, [h, adj.alpha], g, retain_graph=True),
                    torch.autograd.grad(ref, [h, adj.alpha], g)):
        torch.testing.assert_close(a, b)
