"""The pieces of the default structure-learning recipe: always-on self-loops,
the logit prior, and the trainer's options, on small graphs."""
import pytest
import torch

from graphsparse.graph import GatedAdjacency
from graphsparse.structure import (DEFAULT_RECIPES, RECIPES, STRUCTURE_DEFAULTS, fit_structure,
                                   select_structure)
from graphsparse.testing import two_communities


def star_and_path():
    # 0 is a hub of 1..4; 4 - 5 - 6 a path; both directions
    pairs = [(0, 1), (0, 2), (0, 3), (0, 4), (4, 5), (5, 6)]
    src = [a for a, b in pairs] + [b for a, b in pairs]
    dst = [b for a, b in pairs] + [a for a, b in pairs]
    return torch.tensor([src, dst]), 7


def test_fixed_self_loops_never_pruned():
    ei, n = star_and_path()
    adj = GatedAdjacency(ei, n, normalization="none", gate_self_loops=False)
    with torch.no_grad():
        adj.beta_row.fill_(5.0)          # thresholds above every gate: all edges pruned
        adj.beta_col.fill_(5.0)
    values = adj.edge_values()
    loop = adj.edge_index[0] == adj.edge_index[1]
    assert (values[~loop] == 0).all()
    assert (values[loop] == 1).all()      # an empty row keeps its self-loop at one


def test_fixed_self_loop_is_row_max_and_gets_gradient():
    ei, n = star_and_path()
    adj = GatedAdjacency(ei, n, normalization="none", gate_self_loops=False)
    with torch.no_grad():
        adj.alpha.copy_(torch.linspace(-1, 1, adj.alpha.numel()))
    values = adj.edge_values()
    row, col = adj.edge_index[1], adj.edge_index[0]
    loop = row == col
    for i in range(n):
        others = values[(row == i) & ~loop]
        assert torch.isclose(values[(row == i) & loop][0], others.max())
    adj.edge_values().sum().backward()
    assert adj.alpha.grad is not None and torch.isfinite(adj.alpha.grad).all()
    # beta init counts the neighbours only: a node of one neighbour keeps it
    assert torch.isclose(adj.beta0_row[6], torch.tensor(0.0))


def test_gated_self_loops_default_unchanged():
    ei, n = star_and_path()
    adj = GatedAdjacency(ei, n)
    assert adj.gate_self_loops and adj.logit_prior is None      # no prior: no [E] buffer


def test_logit_prior_prunes_and_resets():
    ei, n = star_and_path()
    adj = GatedAdjacency(ei, n, normalization="row", gate_self_loops=False)
    base = adj.edge_values()
    target = ((adj.edge_index[0] == 1) & (adj.edge_index[1] == 0)).nonzero().item()
    prior = torch.zeros(adj.num_edges)
    prior[target] = -8.0
    adj.set_logit_prior(prior)
    assert adj.edge_values()[target] == 0          # loses the hub's row competition
    assert not any(p is adj.logit_prior for p in adj.parameters())
    adj.set_logit_prior(None)
    assert torch.allclose(adj.edge_values(), base)
    assert adj.logit_prior is None
    with pytest.raises(ValueError, match="set_logit_prior"):
        adj.set_logit_prior(torch.zeros(3))


def test_logit_prior_follows_the_state_dict():
    # The buffer exists only once set; a state with a prior gives one to an
    # adjacency without (and the weights it implies), a state without removes it.
    ei, n = star_and_path()
    with_prior = GatedAdjacency(ei, n, normalization="row", gate_self_loops=False)
    prior = torch.zeros(with_prior.num_edges)
    prior[0] = -8.0
    with_prior.set_logit_prior(prior)
    plain = GatedAdjacency(ei, n, normalization="row", gate_self_loops=False)
    assert "logit_prior" not in plain.state_dict()
    plain.load_state_dict(with_prior.state_dict())
    torch.testing.assert_close(plain.logit_prior, prior)
    torch.testing.assert_close(plain.edge_values(), with_prior.edge_values())
    state = {k: v for k, v in with_prior.state_dict().items() if k != "logit_prior"}
    with_prior.load_state_dict(GatedAdjacency(ei, n, normalization="row",
                                              gate_self_loops=False).state_dict())
    assert with_prior.logit_prior is None
    bad = dict(state, logit_prior=torch.zeros(with_prior.num_edges + 3))
    with pytest.raises(RuntimeError, match="size mismatch"):
        plain.load_state_dict(bad)


def test_recipe_defaults_run_and_select_sparse_checkpoint():
    x, ei, y, train, val, test = two_communities()
    cfg = dict(epochs=40, gate_start=10, warmup=10, threshold_lr=0.1)
    res = fit_structure(x, ei, y, train, val, test, config=cfg, seed=0)
    floor = STRUCTURE_DEFAULTS["min_sparsity"]
    eligible = [h for h in res.history if h["edge_sparsity"] >= floor]
    assert eligible, "the recipe must prune at least min_sparsity of the edges here"
    assert res.edge_sparsity >= floor and res.epoch >= 10
    assert res.val_acc == max(h["val_acc"] for h in eligible)   # best eligible checkpoint
    prior = res.model.adjacency.logit_prior
    assert prior.abs().sum() > 0 and (prior <= 3 * STRUCTURE_DEFAULTS["prior_features"]).all()
    # before gate_start the gate does not move from its (noisy) initialization
    res0 = fit_structure(x, ei, y, train, val, test, config=dict(cfg, epochs=5), seed=0)
    res1 = fit_structure(x, ei, y, train, val, test, config=dict(cfg, epochs=1), seed=0)
    assert torch.equal(res0.model.adjacency.alpha, res1.model.adjacency.alpha)
    assert torch.count_nonzero(res0.model.adjacency.alpha) > 0


def test_paper_training_still_available():
    x, ei, y, train, val, test = two_communities()
    cfg = dict(epochs=5, prior=None, gate_start=0, gate_self_loops=True, threshold_lr=None,
               min_sparsity=0.0, normalization="sinkhorn",
               distill=0.0, unit_init=False, init_noise=0.0, groups="both")
    res = fit_structure(x, ei, y, train, val, test, config=cfg, seed=0)
    assert res.model.adjacency.logit_prior is None                  # prior=None: none set
    assert res.model.adjacency.alpha.abs().sum() > 0


def test_unit_init_sym_is_gcn_normalization():
    from torch_geometric.nn.conv.gcn_conv import gcn_norm
    ei, n = star_and_path()
    adj = GatedAdjacency(ei, n, normalization="sym", gate_self_loops=False, unit_init=True)
    values = adj.edge_values().detach()
    ref_ei, ref_w = gcn_norm(ei, None, n, add_self_loops=True)
    key = adj.edge_index[0] * n + adj.edge_index[1]
    ref_key = ref_ei[0] * n + ref_ei[1]
    assert torch.equal(key.sort().values, ref_key.sort().values)
    assert torch.allclose(values[key.argsort()], ref_w[ref_key.argsort()], atol=1e-6)


def test_init_noise_breaks_ties_reproducibly():
    x, ei, y, train, val, test = two_communities()
    cfg = dict(epochs=1, gate_start=10)
    a = fit_structure(x, ei, y, train, val, test, config=dict(cfg, init_noise=0.5), seed=3)
    b = fit_structure(x, ei, y, train, val, test, config=dict(cfg, init_noise=0.5), seed=3)
    c = fit_structure(x, ei, y, train, val, test, config=dict(cfg, init_noise=0.0), seed=3)
    alpha = a.model.adjacency.alpha
    assert torch.equal(alpha, b.model.adjacency.alpha)
    assert 0.35 < float(alpha.std()) < 0.65
    assert torch.count_nonzero(c.model.adjacency.alpha) == 0
    # unit_init divides by the zero-logit gate: equal rows without noise, unequal with it
    row = c.model.adjacency.edge_index[1]
    loop = row == c.model.adjacency.edge_index[0]
    for res, equal in ((c, True), (a, False)):
        v = res.model.adjacency.edge_values().detach()
        i = int(torch.bincount(row[~loop]).argmax())         # the largest row
        vi = v[(row == i) & ~loop]
        assert torch.allclose(vi, vi[0].expand_as(vi)) == equal


def test_distillation_adds_kl_to_teacher_from_gate_start():
    x, ei, y, train, val, test = two_communities()
    cfg = dict(epochs=14, gate_start=10, warmup=10, prior=None, lam=0.0)
    plain = fit_structure(x, ei, y, train, val, test, config=dict(cfg, distill=0.0), seed=0)
    dist = fit_structure(x, ei, y, train, val, test, config=dict(cfg, distill=1.0), seed=0)
    lp = [h["loss"] for h in plain.history]
    ld = [h["loss"] for h in dist.history]
    assert lp[:10] == ld[:10]              # no teacher before gate_start
    # at gate_start both runs have the same parameters and dropout masks: the
    # difference is mu * KL(teacher || model) > 0 (teacher: eval-mode predictions)
    assert ld[10] > lp[10] + 1e-4


def test_select_structure_keeps_best_validation_run():
    x, ei, y, train, val, test = two_communities()
    cfg = dict(epochs=30, gate_start=10, warmup=10, threshold_lr=0.1, min_sparsity=0.0)
    runs = {name: fit_structure(x, ei, y, train, val, test, config={**over, **cfg}, seed=1)
            for name, over in RECIPES.items() if name in DEFAULT_RECIPES}
    best = select_structure(x, ei, y, train, val, test, config=cfg, seed=1)
    assert best.val_acc == max(r.val_acc for r in runs.values())
    first_best = next(n for n, r in runs.items() if r.val_acc == best.val_acc)
    assert best.recipe == first_best
    assert best.test_acc == runs[first_best].test_acc
    one = select_structure(x, ei, y, train, val, test, config=cfg, seed=1, recipes=["denoise"])
    assert one.recipe == "denoise" and one.val_acc == runs["denoise"].val_acc
    with pytest.raises(ValueError, match="unknown recipe"):
        select_structure(x, ei, y, train, val, test, config=cfg, recipes=["fast"])
    with pytest.raises(ValueError, match="at least one"):
        select_structure(x, ei, y, train, val, test, config=cfg, recipes=[])


@pytest.mark.parametrize("normalization", ["sym", "row"])
def test_fit_gcn_normalizations_match_dense_reference(normalization):
    from graphsparse.structure import fit_gcn
    x, ei, y, train, val, test = two_communities(n=30, seed=2)
    ei = torch.unique(ei, dim=1)               # GCNConv counts duplicates twice
    res = fit_gcn(x, ei, y, train, val, test, config=dict(epochs=1, normalization=normalization))
    n = x.size(0)
    a = torch.zeros(n, n)
    a[ei[1], ei[0]] = 1.0                      # A[i, j]: edge j -> i (duplicates merged)
    a = a + torch.eye(n)
    deg = a.sum(1)
    a_hat = a / deg[:, None] if normalization == "row" else a / (deg[:, None] * deg[None, :]).sqrt()
    c1, c2 = res.model.convs
    model = res.model.eval()
    with torch.no_grad():
        h = torch.relu(a_hat @ c1.lin(x) + c1.bias)
        out = a_hat @ c2.lin(h) + c2.bias
        assert torch.allclose(model(x), out, atol=1e-5)
    with pytest.raises(ValueError, match="normalization"):
        fit_gcn(x, ei, y, train, val, config=dict(epochs=1, normalization="sinkhorn"))


def test_distillation_needs_a_warm_phase():
    x, ei, y, train, val, test = two_communities()
    with pytest.raises(ValueError, match="gate_start"):
        fit_structure(x, ei, y, train, val, test, config=dict(epochs=2, gate_start=0))


def test_fit_gcn_without_validation_keeps_the_last_epoch_and_checks_epochs():
    from graphsparse.structure import fit_gcn
    x, ei, y, train, val, test = two_communities()
    res = fit_gcn(x, ei, y, train, torch.zeros_like(val), test, config=dict(epochs=3))
    assert res.epoch == 2 and res.val_acc is None
    with pytest.raises(ValueError, match="epochs"):
        fit_gcn(x, ei, y, train, val, test, config=dict(epochs=0))


def test_select_structure_chooses_the_normalization_too(monkeypatch):
    # recipes x normalizations: each configuration trained once with its own
    # normalization, the validation argmax kept and named "recipe/normalization"
    import graphsparse.structure.train as train_mod
    from graphsparse.structure import selected_config
    x, ei, y, train, val, test = two_communities()
    cfg = dict(epochs=20, gate_start=10, warmup=5, min_sparsity=0.0)
    seen = []
    real = train_mod.fit_structure

    def spy(*args, config=None, **kwargs):
        res = real(*args, config=config, **kwargs)
        seen.append((config["normalization"], config["distill"], res.val_acc))
        return res
    monkeypatch.setattr(train_mod, "fit_structure", spy)
    best = select_structure(x, ei, y, train, val, test, config=cfg, seed=1,
                            recipes=["preserve", "denoise"], normalizations=("row", "sym"))
    names = ["preserve/row", "preserve/sym", "denoise/row", "denoise/sym"]
    from graphsparse.structure import STRUCTURE_DEFAULTS
    keep = STRUCTURE_DEFAULTS["distill"]           # preserve distills, denoise does not
    assert [(n, d) for n, d, _ in seen] == [
        ("row", keep), ("sym", keep),
        ("row", RECIPES["denoise"]["distill"]), ("sym", RECIPES["denoise"]["distill"])]
    vals = [v for _, _, v in seen]
    assert best.recipe == names[vals.index(max(vals))] and best.val_acc == max(vals)
    chosen = selected_config(best.recipe, cfg)
    assert chosen["normalization"] == best.recipe.split("/")[1]
    assert chosen["distill"] == seen[names.index(best.recipe)][1]
    with pytest.raises(ValueError, match="normalizations"):
        select_structure(x, ei, y, train, val, test, config=cfg, normalizations=("rows",))
