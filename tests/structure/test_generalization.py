"""Structure learning beyond pruning: candidate edges that are not in the
input graph, the fall-back of a node on its own features, and a graph whose
edges all join different classes."""
import pytest
import torch
import torch.nn.functional as F

from graphsparse.graph import GatedAdjacency, GatedGCN, GatedResGCN
from graphsparse.graph.knn import knn_candidates
from graphsparse.structure import fit_structure, recipe_config
from graphsparse.structure.train import build_structure_model
from graphsparse.testing import check_reset_keeps_adjacency


def _random_graph(n, num_features, num_edges):
    """Seeded features and a random edge list without self-loops."""
    torch.manual_seed(0)
    x = torch.randn(n, num_features)
    ei = torch.randint(0, n, (2, num_edges))
    return x, ei[:, ei[0] != ei[1]]


def test_knn_candidates_join_the_competition_and_are_marked_new():
    n = 30
    x, ei = _random_graph(n, 4, 60)
    knn = knn_candidates(x, 3)
    adj = GatedAdjacency(ei, n, candidates=knn, groups="row", normalization="row")
    keys = set(map(tuple, adj.edge_index.t().tolist()))
    assert set(map(tuple, knn.t().tolist())) <= keys and set(map(tuple, ei.t().tolist())) <= keys
    given = set(map(tuple, ei.t().tolist()))
    for (s, t), new in zip(adj.edge_index.t().tolist(), adj.new_mask.tolist()):
        assert new == ((s, t) not in given and s != t)
    # the input edges still map back; the new ones take part in the rows' competitions
    assert torch.equal(ei, adj.edge_index[:, adj.input_to_cand])
    values = adj.edge_values()
    assert (values[adj.new_mask] > 0).all()
    (values[adj.new_mask].sum()).backward()
    assert adj.alpha.grad[adj.new_mask].abs().sum() > 0


def _every_neighbour_pruned(model_cls):
    """A model on a row-gated adjacency whose thresholds prune every neighbour
    (self-loops always on), in eval mode, and features that take gradients."""
    torch.manual_seed(0)
    n, f = 20, 5
    ei = torch.randint(0, n, (2, 80))
    adj = GatedAdjacency(ei, n, groups="row", normalization="row", gate_self_loops=False,
                         unit_init=True)
    model = model_cls(f, 8, 3, adjacency=adj).eval()
    with torch.no_grad():
        adj.beta_row.fill_(20.0)                       # every neighbour loses its row
    return model, adj, torch.randn(n, f, requires_grad=True)


def test_a_node_without_neighbours_is_its_mlp():
    model, adj, x = _every_neighbour_pruned(GatedGCN)
    out = model(x)
    c1, c2 = model.convs
    mlp = c2.lin(torch.relu(c1.lin(x) + c1.bias)) + c2.bias
    torch.testing.assert_close(out, mlp)
    assert (adj.self_share() == 1).all()
    out.square().sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert torch.isfinite(x.grad).all()


def test_edges_that_all_join_different_classes_are_mostly_pruned():
    torch.manual_seed(0)
    n = 120
    y = torch.arange(n) % 2
    x = torch.cat([F.one_hot(y, 2).float() + torch.randn(n, 2), torch.randn(n, 4)], 1)
    src, dst = torch.randint(0, n, (2, 1500))
    keep = y[src] != y[dst]
    ei = torch.stack([src[keep], dst[keep]])
    ei = torch.cat([ei, ei.flip(0)], 1)
    perm = torch.randperm(n)
    train, val = (torch.zeros(n, dtype=torch.bool) for _ in range(2))
    train[perm[:30]], val[perm[30:70]] = True, True
    test = ~(train | val)
    res = fit_structure(x, ei, y, train, val, test,
                        config=dict(epochs=150, gate_start=50, warmup=20), seed=0)
    adj = res.model.adjacency
    neighbour = adj.edge_index[0] != adj.edge_index[1]
    assert float((res.edge_values[neighbour] == 0).float().mean()) > 0.5
    assert float(adj.self_share(res.edge_values).mean()) > 0.2
    # an MLP on the same split, selected on validation the same way
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    opt = torch.optim.Adam(mlp.parameters(), lr=0.01, weight_decay=5e-4)
    best = (-1.0, 0.0)
    for _ in range(150):
        mlp.train()
        opt.zero_grad()
        F.cross_entropy(mlp(x)[train], y[train]).backward()
        opt.step()
        pred = mlp.eval()(x).argmax(-1)
        v, t = (float((pred[m] == y[m]).float().mean()) for m in (val, test))
        if v >= best[0]:
            best = (v, t)
    assert res.test_acc >= best[1] - 0.05


def _res_reference(model, x, a_dense):
    """GatedResGCN's forward written out with a dense adjacency (eval mode)."""
    h = F.gelu(model.inp(x))
    for conv, norm, lin2 in zip(model.convs, model.norms, model.lin2):
        z = F.gelu(a_dense @ conv.lin(norm(h)) + conv.bias)
        h = h + lin2(z)
    return model.out(model.out_norm(h))


def test_residual_gcn_equals_a_dense_reference():
    torch.manual_seed(1)
    n, f = 15, 4
    ei = torch.randint(0, n, (2, 50))
    adj = GatedAdjacency(ei, n, groups="row", normalization="row", init_noise=0.3)
    model = GatedResGCN(f, 8, 3, adjacency=adj).eval().double()
    x = torch.randn(n, f, dtype=torch.float64)
    edge_index, w = adj()
    dense = torch.zeros(n, n, dtype=torch.float64).index_put_(
        (edge_index[1], edge_index[0]), w, accumulate=True)
    torch.testing.assert_close(model(x), _res_reference(model, x, dense))
    # the gate gets a gradient through the residual blocks
    model(x).square().sum().backward()
    assert adj.alpha.grad.abs().sum() > 0


def test_residual_gcn_without_neighbours_is_its_mlp():
    model, adj, x = _every_neighbour_pruned(GatedResGCN)
    out = model(x)
    # the same network with the identity as its aggregation: an MLP with residual blocks
    mlp = _res_reference(model, x, torch.eye(x.size(0)))
    torch.testing.assert_close(out, mlp)
    assert (adj.self_share() == 1).all()
    out.square().sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert torch.isfinite(x.grad).all()
    # reset_parameters leaves the given adjacency alone and redraws the layers
    check_reset_keeps_adjacency(model)


def test_residual_recipe_builds_the_residual_model_and_knn_adds_candidates():
    n = 40
    x, ei = _random_graph(n, 6, 100)
    cfg = recipe_config("preserve+residual", dict(knn=3))
    model = build_structure_model(6, 2, ei, n, cfg, x)
    assert isinstance(model, GatedResGCN) and model.hidden_channels == cfg["hidden"]
    adj = model.adjacency
    keys = set(map(tuple, adj.edge_index.t().tolist()))
    assert set(map(tuple, knn_candidates(x, 3).t().tolist())) <= keys
    assert int(adj.new_mask.sum()) > 0
    assert isinstance(build_structure_model(6, 2, ei, n, recipe_config("preserve"), x), GatedGCN)
    with pytest.raises(ValueError, match="'knn'"):
        build_structure_model(6, 2, ei, n, cfg)            # knn without the features
    with pytest.raises(ValueError, match="'knn'"):
        build_structure_model(6, 2, ei, n, dict(cfg, knn=-1), x)
    with pytest.raises(ValueError, match="'architecture'"):
        build_structure_model(6, 2, ei, n, dict(cfg, architecture="gat"), x)
