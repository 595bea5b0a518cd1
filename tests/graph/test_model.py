import pytest
import torch
import torch.nn.functional as F

from graphsparse.graph import EdgeScorer, GatedAdjacency, GatedGCN, GatedGCNConv
from graphsparse.testing import devices


@pytest.mark.parametrize("learned", [False, True])
def test_conv_matches_dense_forward_and_gradient(learned, dense, graph):
    # learned=True takes the fused path (weights that require a gradient).
    n = 12
    edge_index = graph(n, 0.3)
    w = torch.rand(edge_index.size(1), dtype=torch.float64, requires_grad=learned)
    x = torch.randn(n, 4, dtype=torch.float64, requires_grad=True)
    conv = GatedGCNConv(4, 3).double()
    with torch.no_grad():
        conv.bias.normal_()
    out = conv(x, edge_index, w)
    ref = dense.adjacency(edge_index, w, n) @ (x @ conv.lin.weight.t()) + conv.bias
    torch.testing.assert_close(out, ref)
    inputs = [x, conv.lin.weight] + ([w] if learned else [])
    g = torch.randn_like(out)
    for a, b in zip(torch.autograd.grad((out * g).sum(), inputs),
                    torch.autograd.grad((ref * g).sum(), inputs)):
        torch.testing.assert_close(a, b)
    if learned:
        torch.autograd.gradcheck(lambda x, w: conv(x, edge_index, w), (x, w))
    ones = dense.adjacency(edge_index, torch.ones_like(w), n)
    torch.testing.assert_close(conv(x, edge_index), ones @ (x @ conv.lin.weight.t()) + conv.bias)


def _model(n=16, f=6, normalization="sinkhorn", seed=0, **kwargs):
    from torch_geometric.utils import erdos_renyi_graph
    torch.manual_seed(seed)
    edge_index = erdos_renyi_graph(n, 0.3)
    adj = GatedAdjacency(edge_index, n, normalization=normalization, **kwargs)
    return GatedGCN(f, 8, 3, adjacency=adj), torch.randn(n, f)


@pytest.mark.parametrize("num_layers", [1, 2, 3])
def test_model_matches_dense(num_layers, dense):
    model, x = _model()
    model = GatedGCN(6, 8, 3, num_layers=num_layers, adjacency=model.adjacency).eval()
    adj = model.adjacency
    a = dense.adjacency(adj.edge_index, adj.edge_values(), adj.num_nodes)
    h = x
    for i, conv in enumerate(model.convs):
        h = a @ (h @ conv.lin.weight.t()) + conv.bias
        h = h.relu() if i < num_layers - 1 else h
    torch.testing.assert_close(model(x), h)


def test_parameter_groups_partition_the_model():
    model, _ = _model()
    gate = {id(p) for p in model.gate_parameters()}
    weight = {id(p) for p in model.weight_parameters()}
    assert gate and weight and not gate & weight
    assert gate | weight == {id(p) for p in model.parameters()}


@pytest.mark.parametrize("normalization", ["sinkhorn", "balanced", "row", "sym", "none"])
def test_every_parameter_gets_a_finite_gradient(normalization):
    model, x = _model(normalization=normalization)
    y = torch.randint(0, 3, (x.size(0),))
    (F.cross_entropy(model(x), y) + 0.1 * model.penalty(0.5)).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_gates_learn_sparse_structure_without_nan():
    model, x = _model(n=40, f=8, seed=1)
    y = (x @ torch.randn(8, 3)).argmax(1)                      # a learnable task
    model.dropout = 0.0
    opt = torch.optim.Adam([{"params": model.gate_parameters(), "lr": 0.1},
                            {"params": model.weight_parameters(), "lr": 0.02}])
    losses = []
    for _ in range(40):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        (loss + 1e-3 * model.penalty(0.5)).backward()
        opt.step()
        losses.append(loss.item())
        assert all(torch.isfinite(p).all() for p in model.parameters())
    assert sum(losses[-5:]) / 5 < 0.7 * losses[0]
    assert model.adjacency.edge_sparsity() > 0.1
    edge_index, weight = model.adjacency()
    assert edge_index.size(1) < model.adjacency.num_edges and (weight > 0).all()


@pytest.mark.parametrize("kind", ["dot", "mlp"])
def test_scorer_model_runs_on_another_graph(kind, graph):
    from torch_geometric.utils import erdos_renyi_graph
    n, f = 16, 6
    adj = GatedAdjacency(erdos_renyi_graph(n, 0.3), n, scorer=EdgeScorer(f, 8, kind=kind),
                         symmetric=True)
    model = GatedGCN(f, 8, 3, adjacency=adj)
    x_new, ei_new = torch.randn(9, f), graph(9, 0.4, seed=3)
    out = model(x_new, ei_new)
    assert out.shape == (9, 3)
    (out.sum() + model.penalty()).backward()       # penalty on the last input graph
    assert all(p.grad is not None for p in model.gate_parameters())
    free = GatedGCN(f, 8, 3, adjacency=GatedAdjacency(erdos_renyi_graph(n, 0.3), n))
    with pytest.raises(ValueError, match="scorer"):
        free(x_new, ei_new)


@pytest.mark.parametrize("device", devices())
def test_runs_on_device(device):
    model, x = _model()
    model, x = model.to(device), x.to(device)
    out = model(x)
    (out.sum() + model.penalty()).backward()
    assert out.device.type == device


@pytest.mark.parametrize("kwargs,name", [
    (dict(adjacency="row"), "adjacency"),
    (dict(num_layers=0), "num_layers"),
    (dict(dropout=1.0), "dropout"),
    (dict(hidden_channels=0), "hidden_channels"),
])
def test_bad_arguments_name_the_argument(kwargs, name):
    model, _ = _model()
    args = dict(in_channels=6, hidden_channels=8, out_channels=3, adjacency=model.adjacency)
    args.update(kwargs)
    with pytest.raises(ValueError, match=name):
        GatedGCN(**args)
    x = torch.randn(17, 6)
    with pytest.raises(ValueError, match="'x'"):
        model(x)                                    # 17 rows for 16 nodes


@pytest.mark.data
def test_scorer_training_on_cora_stays_finite():
    # Regression: raw Cora features drive a dot scorer's logits to -100 within
    # a dozen steps; before the logit floor and the zero-gradient mask in the
    # Sinkhorn backward this turned the gradients into NaN at step 13.
    from torch_geometric.datasets import Planetoid

    from graphsparse.testing import require_data
    root = require_data("planetoid/Cora/raw").parent.parent
    data = Planetoid(str(root), "Cora")[0]
    scorer = EdgeScorer(data.num_features, 64, kind="dot")
    model = GatedGCN(data.num_features, 16, 7,
                     adjacency=GatedAdjacency.from_data(data, scorer=scorer))
    opt = torch.optim.Adam([{"params": model.weight_parameters(), "lr": 0.01},
                            {"params": model.gate_parameters(), "lr": 0.05}])
    for _ in range(20):
        opt.zero_grad()
        out = model(data.x)
        loss = F.cross_entropy(out[data.train_mask], data.y[data.train_mask])
        (loss + 1e-4 * model.penalty(0.5)).backward()
        opt.step()
        assert all(torch.isfinite(p).all() for p in model.parameters())


def test_given_adjacency_is_never_reset_and_pyg_order_fails():
    model, _ = _model()
    adj = model.adjacency
    with torch.no_grad():
        for p in adj.parameters():
            p.uniform_(-2, 2)
    trained = [p.detach().clone() for p in adj.parameters()]
    other = GatedGCN(6, 8, 3, adjacency=adj)
    other.reset_parameters()
    assert all(torch.equal(a, p) for a, p in zip(trained, adj.parameters()))
    convs = [p.detach().clone() for p in other.convs.parameters()]
    other.reset_parameters()                        # resets what it owns
    assert any(not torch.equal(a, p) for a, p in zip(convs, other.convs.parameters()))
    with pytest.raises(TypeError):
        GatedGCN(6, 8, 2, 7, adjacency=adj)         # PyG order (in, hidden, num_layers, out)


def test_external_weights_equal_the_owned_adjacency():
    model, x = _model()
    model.eval()
    edge_index, edge_weight = model.adjacency()
    torch.testing.assert_close(model(x, edge_index, edge_weight), model(x))
    bare = GatedGCN(6, 8, 3)
    bare.load_state_dict({k: v for k, v in model.state_dict().items()
                          if not k.startswith("adjacency.")})
    torch.testing.assert_close(bare.eval()(x, edge_index, edge_weight), model(x))
    with pytest.raises(ValueError, match="edge_weight"):
        bare(x)


def test_penalty_after_forward_evaluates_the_adjacency_once(monkeypatch):
    model, x = _model()
    calls = []
    values = model.adjacency._values
    monkeypatch.setattr(model.adjacency, "_values", lambda *a: calls.append(1) or values(*a))
    for _ in range(3):
        model.zero_grad()
        (model(x).sum() + model.penalty(0.5)).backward()
    assert len(calls) == 3                          # once per step, penalty included


@pytest.mark.parametrize("zero_share", [0.1, 0.5])
def test_zeros_kept_or_dropped_give_the_same_model(zero_share):
    """GatedGCN passes every candidate (zeros included, the stored edge_index
    itself) while few weights are zero and drops them once many are; either
    way outputs and every gradient equal those of the dropped-zero graph."""
    model, x = _model(n=30, seed=3)
    adj = model.adjacency
    with torch.no_grad():      # prune a share of the non-loop candidates exactly
        gated = (adj.edge_index[0] != adj.edge_index[1]).nonzero().view(-1)
        dead = gated[torch.randperm(gated.numel())[:int(zero_share * adj.num_edges)]]
        adj.alpha[dead] = -40.0
    values = adj.edge_values()
    share = float((values == 0).float().mean())
    assert 0 < share and (share < 0.25) == (zero_share < 0.25)
    passed = []
    conv = model.convs[0]
    conv.register_forward_pre_hook(lambda m, args: passed.append(args[1]))
    params = list(model.parameters())                # the adjacency's included
    torch.manual_seed(0)                             # the same dropout masks
    out = model(x)
    grads = torch.autograd.grad(out.pow(2).sum(), params, allow_unused=True)
    kept = passed[-1] is adj.edge_index
    assert kept == (share < 0.25)
    ei, w = adj(x)                                   # zeros dropped
    assert (w > 0).all()
    torch.manual_seed(0)
    ref = model(x, ei, w)
    ref_grads = torch.autograd.grad(ref.pow(2).sum(), params, allow_unused=True)
    torch.testing.assert_close(out, ref)
    for a, b in zip(grads, ref_grads, strict=True):
        if a is None or b is None:
            assert a is None and b is None
        else:
            torch.testing.assert_close(a, b)
            assert torch.isfinite(a).all()


def test_forward_keep_returns_the_stored_candidates():
    model, x = _model()
    adj = model.adjacency
    ei, w, eid = adj(zeros="keep", return_edge_id=True)
    assert ei is adj.edge_index and w.numel() == adj.num_edges
    torch.testing.assert_close(w, adj.edge_values())
    assert torch.equal(eid, torch.arange(adj.num_edges))
    with pytest.raises(ValueError, match="zeros"):
        adj(zeros="some")


@pytest.mark.parametrize("normalization,scorer", [("row", None), ("sinkhorn", None),
                                                  ("row", "dot")])
def test_compiled_training_step_runs_and_equals_eager(normalization, scorer, graph):
    # A regression: dynamo traced the sparse products' backward passes (and
    # crashed on their CSR tensors); they are kept out of compiled graphs.
    torch.manual_seed(0)
    n = 30
    edge_index = graph(n, 0.2)
    x, y = torch.randn(n, 5), torch.randint(0, 3, (n,))
    grads = []
    for compiled in (False, True):
        torch.manual_seed(1)
        # the dot scorer: its per-edge products (edge_dot) stay out of the graph too
        edge_scorer = None if scorer is None else EdgeScorer(5, 4, kind=scorer)
        adj = GatedAdjacency(edge_index, n, groups="both", normalization=normalization,
                             scorer=edge_scorer)
        model = GatedGCN(5, 8, 3, adjacency=adj, dropout=0.0)
        if edge_scorer is not None:
            with torch.no_grad():
                edge_scorer.scale.fill_(0.5)      # a scorer that moves the logits

        def step():
            loss = F.cross_entropy(model(x), y) + 1e-3 * model.penalty(0.5)
            loss.backward()
            return loss.detach()
        run = torch.compile(step, backend="eager") if compiled else step
        run()
        grads.append([p.grad.clone() for p in model.parameters()])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b)
