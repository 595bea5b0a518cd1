"""Tests that kill the mutants of graphsparse/structure/learner.py that the
other tests let survive (tools/mutation.sh): the checkpoint's return value,
the agreement prior against a dense reference from its first epoch on, the
penalty weight's whole schedule, and the settings' inclusive bounds."""
import math
import warnings

import pytest
import torch
import torch.nn.functional as F

from graphsparse.graph import GatedAdjacency
from graphsparse.structure.learner import StructureLearner
from graphsparse.testing import two_communities

# the gate gets no gradient here: no training step runs, only the learner is driven
pytestmark = pytest.mark.filterwarnings("ignore:the gate received no gradient")


def _setup(**settings):
    x, ei, y, train, val, test = two_communities(n=24)
    adj = GatedAdjacency(ei, x.size(0), groups="row", normalization="row",
                         gate_self_loops=False, unit_init=True, init_noise=0.1)
    return StructureLearner(adj, y, train, x=x, **settings), adj, (x, y, train)


def _step(learner, adj, out, metric=None):
    with torch.no_grad():
        adj()                                   # this epoch's weights: its sparsity
    return learner.step(out, metric)


def test_step_returns_true_only_for_a_new_best():
    learner, adj, _ = _setup(gate_start=0, distill=0.0, min_sparsity=0.0, prior=None)
    out = torch.zeros(adj.num_nodes, 2)
    got = [_step(learner, adj, out, m) for m in (0.5, 0.4, 0.5, 0.6, 0.1)]
    assert got == [True, False, True, True, False]       # ties: the later epoch wins
    assert learner.restore()["epoch"] == 3
    # no metric: never a checkpoint, the last epoch stays
    learner, adj, _ = _setup(gate_start=0, distill=0.0, min_sparsity=0.0, prior=None)
    assert [_step(learner, adj, out) for _ in range(2)] == [False, False]
    assert learner.best is None and learner.restore()["epoch"] == 1


def test_restore_before_any_step_is_an_error():
    learner, _, _ = _setup()
    with pytest.raises(ValueError, match="before any 'step'"):
        learner.restore()


def _reference_prior(adj, ema, x, tau, kappa):
    c0, c1 = adj.edge_index
    loop = c0 == c1
    prior = tau * (F.cosine_similarity(ema[c0], ema[c1], dim=-1) - 1)
    if kappa:
        fc = F.cosine_similarity(x[c0], x[c1], dim=-1)
        z = (fc - fc[~loop].mean()) / fc[~loop].std()
        prior = prior + kappa * z.clamp(-3.0, 3.0)
    prior[loop] = prior.max()
    return prior


@pytest.mark.parametrize("kappa", [0.0, 0.7])
def test_agreement_prior_equals_the_dense_reference_from_its_first_epoch(kappa):
    tau, temp, mom, start = 3.0, 0.5, 0.6, 3
    learner, adj, (x, y, train) = _setup(gate_start=start, distill=0.2, prior="agreement",
                                         prior_scale=tau, prior_temperature=temp,
                                         prior_momentum=mom, prior_features=kappa)
    assert bool((adj.edge_index[0] == adj.edge_index[1]).any())   # self-loops: set to the max
    g = torch.Generator().manual_seed(1)
    ema = None
    for epoch in range(5):
        out = torch.randn(adj.num_nodes, 2, generator=g)
        _step(learner, adj, out, 0.5)
        prob = (out / temp).softmax(-1)
        prob[train] = F.one_hot(y[train], 2).float()               # labels on training nodes
        ema = prob if ema is None else mom * ema + (1 - mom) * prob
        torch.testing.assert_close(learner.ema, ema)
        if epoch + 1 < start:
            prior = adj.logit_prior                                  # none before the gate trains
            assert prior is None or bool((prior == 0).all())
        else:
            torch.testing.assert_close(adj.logit_prior, _reference_prior(adj, ema, x, tau, kappa))
        if epoch + 1 == start:                                       # the teacher: this epoch's
            torch.testing.assert_close(learner.teacher, out.softmax(-1))
        elif epoch + 1 < start:
            assert learner.teacher is None


def test_feature_prior_needs_two_non_loop_edges():
    ei = torch.tensor([[0, 1], [1, 0]])                            # one pair: a std of 2 values
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    y, train = torch.tensor([0, 1, 0]), torch.tensor([True, True, False])
    adj = GatedAdjacency(ei, 3, groups="row", normalization="row", gate_self_loops=False)
    learner = StructureLearner(adj, y, train, x=x, prior_features=1.0)
    assert learner._feature_prior is not None
    adj1 = GatedAdjacency(ei[:, :1], 3, groups="row", normalization="row", gate_self_loops=False)
    assert StructureLearner(adj1, y, train, x=x, prior_features=1.0)._feature_prior is None


def test_penalty_weight_schedule_over_every_epoch():
    lam, start, warmup = 0.4, 2, 3
    learner, adj, _ = _setup(gate_start=start, warmup=warmup, lam=lam, distill=0.0, prior=None)
    out = torch.zeros(adj.num_nodes, 2)
    got = []
    for _ in range(7):
        got.append(learner.lam)
        assert learner.gate_active == (learner.epoch >= start)
        assert all(p.requires_grad == learner.gate_active for p in adj.gate_parameters())
        _step(learner, adj, out)
    want = [0.0 if t < start else lam * min(1.0, (t - start + 1) / warmup) for t in range(7)]
    assert got == pytest.approx(want)
    # warmup=0: the full weight from gate_start on; the loss is lam times the penalty
    learner, adj, _ = _setup(gate_start=1, warmup=0, lam=lam, distill=0.0, prior=None)
    assert learner.lam == 0.0
    _step(learner, adj, out)
    assert learner.lam == lam
    torch.testing.assert_close(learner.loss(out), lam * adj.penalty(0.5))


@pytest.mark.parametrize("name,value", [
    ("lam", 0.0), ("p", 1.0), ("p", 1e-6), ("prior_momentum", 0.0), ("prior_momentum", 1.0),
    ("min_sparsity", 0.0), ("min_sparsity", 1.0), ("warmup", 0), ("prior_temperature", 1e-6),
    ("threshold_lr", None), ("threshold_lr", 0.0), ("distill", 0.0),
])
def test_settings_accept_their_inclusive_bounds(name, value):
    learner, _, _ = _setup(**{name: value})
    assert learner.settings[name] == value


@pytest.mark.parametrize("name,value", [
    ("lam", -1e-9), ("lam", math.nan), ("lam", True), ("lam", "1"), ("p", 1.0 + 1e-9),
    ("p", 0.0), ("prior_momentum", 1.0 + 1e-9), ("min_sparsity", -1e-9), ("warmup", 2.0),
    ("warmup", -1), ("gate_start", 1.5), ("prior_temperature", 0.0), ("gate_lr", -1.0),
    ("prior_scale", -1.0), ("prior_features", math.nan), ("threshold_lr", -1.0),
])
def test_settings_refuse_values_out_of_range(name, value):
    with pytest.raises(ValueError, match=f"'{name}'"):
        _setup(**{name: value})


def test_features_and_model_are_keyword_only():
    learner, adj, (x, y, train) = _setup()
    with pytest.raises(TypeError):
        StructureLearner(adj, y, train, x)


def test_prior_ignores_the_labels_when_the_model_has_other_classes():
    learner, adj, (x, y, train) = _setup(gate_start=0, distill=0.0, prior_temperature=1.0)
    out = torch.randn(adj.num_nodes, 3)                           # 3 outputs, 2 labelled classes
    _step(learner, adj, out)
    torch.testing.assert_close(learner.ema, out.softmax(-1))     # the predictions only


def test_loops_get_the_largest_prior_even_for_a_zero_feature_row():
    """A zero feature row has cosine 0 with itself: its self-loop is not the
    largest feature term, and only the explicit rule makes it the row max."""
    x, ei, y, train, val, test = two_communities(n=24)
    x[5] = 0.0
    adj = GatedAdjacency(ei, x.size(0), groups="row", normalization="row",
                         gate_self_loops=False, unit_init=True)
    learner = StructureLearner(adj, y, train, x=x, gate_start=0, distill=0.0,
                               prior_features=0.7)
    out = torch.randn(adj.num_nodes, 2)
    _step(learner, adj, out)
    loop5 = (adj.edge_index[0] == 5) & (adj.edge_index[1] == 5)
    assert bool(loop5.any())
    prior = adj.logit_prior
    assert float(prior[loop5]) == float(prior.max())
    torch.testing.assert_close(prior, _reference_prior(adj, learner.ema, x, 3.0 * 2, 0.7))


@pytest.mark.parametrize("bad", ["y", "mask_shape", "mask_dtype"])
def test_labels_and_mask_must_match_the_nodes(bad):
    x, ei, y, train, val, test = two_communities(n=24)
    adj = GatedAdjacency(ei, x.size(0))
    y, train = {"y": (y[:-1], train), "mask_shape": (y, train[:-1]),
                "mask_dtype": (y, train.long())}[bad]
    with pytest.raises(ValueError, match="boolean 'train_mask'"):
        StructureLearner(adj, y, train)


def test_a_nan_metric_is_an_error():
    learner, adj, _ = _setup(gate_start=0, distill=0.0)
    with pytest.raises(ValueError, match="NaN 'metric'"):
        _step(learner, adj, torch.zeros(adj.num_nodes, 2), float("nan"))


def test_no_gradient_warning_when_the_gate_trains():
    from graphsparse.graph import GatedGCN
    learner, adj, (x, y, train) = _setup(gate_start=0, distill=0.0, lam=1.0)
    model = GatedGCN(2, 8, 2)
    out = model(x, *adj())
    (F.cross_entropy(out[train], y[train]) + learner.loss(out)).backward()
    with torch.no_grad():
        out = model(x, *adj())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        learner.step(out, 0.5)


def test_scorer_adjacency_gets_the_features():
    from graphsparse.graph.scorer import EdgeScorer
    x, ei, y, train, val, test = two_communities(n=24)
    adj = GatedAdjacency(ei, x.size(0), scorer=EdgeScorer(2, hidden_channels=4))
    learner = StructureLearner(adj, y, train, x=x, gate_start=0, distill=0.0)
    assert learner.x is x
    torch.testing.assert_close(learner.penalty(), adj.penalty(0.5, x))
    with pytest.raises(ValueError, match="needs 'x'"):
        StructureLearner(adj, y, train)
    plain, _, _ = _setup()
    assert plain.x is None                     # no scorer: the features are not its input


def test_teacher_is_taken_for_a_late_gate_start():
    """Epochs compared by value: ints past 256 are not shared objects."""
    learner, adj, _ = _setup(gate_start=300, distill=0.1, prior=None)
    learner.load_state_dict(dict(learner.state_dict(), epoch=299))
    out = torch.randn(adj.num_nodes, 2)
    _step(learner, adj, out)
    torch.testing.assert_close(learner.teacher, out.softmax(-1))
