"""DAGNN on a learned adjacency: the K-hop propagation kernel against stacked
single hops and a dense reference, the model against its written-out
forward, and the fall-back on the MLP when every neighbour is pruned."""
import pytest
import torch

from graphsparse.graph import GatedAdjacency, GatedDAGNN, sparse_features
from graphsparse.graph._ops import propagate_hops, weighted_aggregate
from graphsparse.structure import recipe_config
from graphsparse.structure.train import build_structure_model
from graphsparse.testing import check_reset_keeps_adjacency


def _edges(n, e, seed=0):
    # duplicates kept, node n - 1 without in-coming edges (an empty row)
    g = torch.Generator().manual_seed(seed)
    ei = torch.randint(0, n, (2, e), generator=g)
    ei[1][ei[1] == n - 1] = 0
    return torch.cat([ei, ei[:, :3]], 1)      # three duplicate edges


@pytest.mark.parametrize("num_hops", [0, 1, 4])
def test_hops_equal_dense_powers_and_stacked_single_hops(num_hops, dense):
    n = 14
    ei = _edges(n, 40)
    w = torch.rand(ei.size(1), dtype=torch.float64)
    w[::5] = 0.0                                   # exact zeros among the weights
    w.requires_grad_()
    h = torch.randn(n, 3, dtype=torch.float64, requires_grad=True)
    out = propagate_hops(h, ei, w, num_hops)
    if num_hops == 0:
        assert torch.equal(out, h.unsqueeze(0))
        return
    assert out.shape == (num_hops + 1, n, 3)
    a = dense.adjacency(ei, w, n)
    ref = torch.stack([torch.linalg.matrix_power(a, k) @ h for k in range(num_hops + 1)])
    torch.testing.assert_close(out, ref)
    assert torch.equal(out[:, n - 1][1:], torch.zeros(num_hops, 3, dtype=torch.float64))
    # gradients: dense reference and the single-hop kernel called K times
    g = torch.randn_like(out)
    grads = torch.autograd.grad((out * g).sum(), (h, w))
    torch.testing.assert_close(grads, torch.autograd.grad((ref * g).sum(), (h, w)))
    hops = [h]
    for _ in range(num_hops):
        hops.append(weighted_aggregate(hops[-1], ei, w))
    torch.testing.assert_close(grads, torch.autograd.grad((torch.stack(hops) * g).sum(), (h, w)))
    torch.autograd.gradcheck(lambda h, w: propagate_hops(h, ei, w, num_hops), (h, w))
    # the edge-list path (other dtypes) computes the same
    torch.testing.assert_close(propagate_hops(h, ei, w, num_hops, _path="edge_list"), out)


def test_hops_gradient_of_the_features_alone():
    n = 10
    ei = _edges(n, 30, seed=1)
    w = torch.rand(ei.size(1), dtype=torch.float64)     # fixed weights: no SDDMM
    h = torch.randn(n, 2, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(lambda h: propagate_hops(h, ei, w, 3), (h,))


def _reference(model, x, a):
    """GatedDAGNN's forward written out with a dense adjacency (eval mode)."""
    l1, l2 = model.convs
    z = l2(torch.relu(l1(x)))
    hops = [z]
    for _ in range(model.num_hops):
        hops.append(a @ hops[-1])
    return sum(torch.sigmoid(model.hop_score(hk)) * hk for hk in hops)


def test_dagnn_equals_a_dense_reference_and_trains_the_gate():
    torch.manual_seed(2)
    n, f = 16, 5
    ei = _edges(n, 50)
    adj = GatedAdjacency(ei, n, groups="row", normalization="sym", init_noise=0.3)
    model = GatedDAGNN(f, 8, 3, num_hops=4, adjacency=adj).eval().double()
    x = torch.randn(n, f, dtype=torch.float64)
    edge_index, w = adj()
    a = torch.zeros(n, n, dtype=torch.float64).index_put_((edge_index[1], edge_index[0]), w,
                                                          accumulate=True)
    out = model(x)
    torch.testing.assert_close(out, _reference(model, x, a))
    # sparse CSR features give the same logits
    torch.testing.assert_close(model(sparse_features(x, max_density=1.0)), out)
    out.square().sum().backward()
    assert adj.alpha.grad.abs().sum() > 0
    weights = model.hop_weights(x)
    assert weights.shape == (n, 5) and bool(((weights > 0) & (weights < 1)).all())
    # the hop weights are those of the forward: y = sum_k s_k H_k
    hops = torch.stack([torch.linalg.matrix_power(a, k) @ model.convs[1](torch.relu(
        model.convs[0](x))) for k in range(5)])
    torch.testing.assert_close((weights.t().unsqueeze(-1) * hops).sum(0), out.detach())
    # every module's own mode comes back (the adjacency's included)
    model.train()
    adj.eval()
    model.hop_weights(x)
    assert model.training and model.convs[0].training and not adj.training


def test_dagnn_without_neighbours_is_its_mlp():
    torch.manual_seed(0)
    n, f = 20, 5
    ei = torch.randint(0, n, (2, 80))
    adj = GatedAdjacency(ei, n, groups="row", normalization="row", gate_self_loops=False,
                         unit_init=True)
    model = GatedDAGNN(f, 8, 3, num_hops=6, adjacency=adj).eval()
    with torch.no_grad():
        adj.beta_row.fill_(20.0)                       # every neighbour loses its row
    x = torch.randn(n, f, requires_grad=True)
    out = model(x)
    l1, l2 = model.convs
    z = l2(torch.relu(l1(x)))
    # every hop is the node's own MLP output: y = (K + 1) sigmoid(z q + b) z
    torch.testing.assert_close(out, 7 * torch.sigmoid(model.hop_score(z)) * z)
    assert (adj.self_share() == 1).all()
    out.square().sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert torch.isfinite(x.grad).all()
    check_reset_keeps_adjacency(model)


def test_dagnn_architecture_and_bad_hops():
    n = 12
    ei = _edges(n, 30)
    model = build_structure_model(4, 3, ei, n, recipe_config("preserve",
                                                             dict(architecture="dagnn")))
    assert isinstance(model, GatedDAGNN) and model.num_hops == 10
    with pytest.raises(ValueError, match="num_hops"):
        GatedDAGNN(4, 8, 3, num_hops=0)


def test_dagnn_recipe_prunes_inside_fit_structure():
    from graphsparse.structure import DEFAULT_RECIPES, RECIPES, fit_structure
    from graphsparse.testing import two_communities
    assert {"preserve+dagnn", "denoise+dagnn"} <= set(RECIPES)
    assert not {"preserve+dagnn", "denoise+dagnn"} & set(DEFAULT_RECIPES)    # opt-in
    x, ei, y, train, val, test = two_communities()
    cfg = recipe_config("preserve+dagnn", dict(epochs=150, gate_start=30, warmup=10,
                                               threshold_lr=0.1, min_sparsity=0.0))
    res = fit_structure(x, ei, y, train, val, test, config=cfg, seed=0)
    assert isinstance(res.model, GatedDAGNN) and res.model.hidden_channels == 64
    adj = res.model.adjacency
    neighbour = adj.edge_index[0] != adj.edge_index[1]
    assert float((res.edge_values[neighbour] == 0).float().mean()) > 0.0
    assert res.val_acc is not None and res.val_acc > 0.8    # chance: 0.5
