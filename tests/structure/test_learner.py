"""The composable learner: its loss, its checkpoint choice, its use from a
user's loop (the drop-in example), resume, and one adjacency evaluation per
pass."""
import importlib.util
import os
import signal
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from graphsparse.graph import GatedAdjacency, GatedGCN
from graphsparse.structure import (STRUCTURE_DEFAULTS, StructureLearner, build_adjacency,
                                   fit_structure)
from graphsparse.testing import two_communities

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "pyg_drop_in.py"


def _example():
    spec = importlib.util.spec_from_file_location("pyg_drop_in", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _learner(**settings):
    x, ei, y, train, val, test = two_communities()
    adj = GatedAdjacency(ei, x.size(0), groups="row", normalization="row",
                         gate_self_loops=False, unit_init=True, init_noise=0.1)
    model = GatedGCN(2, 8, 2)
    learner = StructureLearner(adj, y, train, x=x, model=model, **settings)
    return learner, adj, model, (x, y, train, val)


def test_loss_is_distillation_plus_scheduled_penalty():
    learner, adj, model, (x, y, train, val) = _learner(gate_start=2, warmup=4, lam=0.5,
                                                       distill=0.3)
    assert not any(p.requires_grad for p in adj.parameters())   # warm start: frozen
    for epoch in range(3):
        out = model(x, *adj())
        loss = learner.loss(out)
        if epoch < 2:
            assert loss.item() == 0.0                             # no teacher, lambda 0
        with torch.no_grad():
            learner.step(model.eval()(x, *adj()), 0.5)
        model.train()
    assert learner.epoch == 3 and all(p.requires_grad for p in adj.parameters())
    assert learner.lam == pytest.approx(0.5 * 2 / 4)              # t = 2 of the 4-epoch ramp
    out = model(x, *adj())
    expected = (0.3 * F.kl_div(out.log_softmax(-1), learner.teacher, reduction="sum")
                + learner.lam * adj.penalty(0.5))
    got = learner.loss(out)
    torch.testing.assert_close(got, expected)
    assert learner.teacher is not None and got > 0
    got.backward()                                                # the penalty reaches the gate
    assert adj.beta_row.grad is not None and adj.beta_row.grad.abs().sum() > 0


def test_checkpoint_respects_the_sparsity_floor(monkeypatch):
    learner, adj, model, (x, y, train, val) = _learner(gate_start=0, distill=0.0,
                                                       min_sparsity=0.2)
    script = [(0.9, 0.0), (0.5, 0.3), (0.6, 0.25), (0.6, 0.4), (0.95, 0.1)]  # (metric, sparsity)
    weights = []
    for metric, sparsity in script:
        monkeypatch.setattr(adj, "sparsity_of", lambda values, s=sparsity: s)
        with torch.no_grad():
            model.convs[0].bias.fill_(metric)                     # a state to recognise
            learner.step(model(x, *adj()), metric)
        weights.append(model.convs[0].bias.clone())
    best = learner.restore()
    assert best["epoch"] == 3 and best["sparsity"] == 0.4        # best eligible, ties: later
    torch.testing.assert_close(model.convs[0].bias, weights[3])  # its state is restored
    # nothing eligible: the last epoch stays
    learner, adj, model, (x, y, train, val) = _learner(gate_start=0, distill=0.0,
                                                       min_sparsity=0.9)
    with torch.no_grad():
        learner.step(model(x, *adj()), 0.9)
    assert learner.restore()["epoch"] == 0 and learner.best is None


def test_learner_checks_the_model_and_the_gradient():
    from torch_geometric.nn import GCNConv, SAGEConv
    x, ei, y, train, val, test = two_communities()
    adj = GatedAdjacency(ei, x.size(0))
    with pytest.raises(ValueError, match="EdgeWeighted"):
        StructureLearner(adj, y, train, model=SAGEConv(2, 2))
    with pytest.raises(ValueError, match="cached=False"):
        StructureLearner(adj, y, train, model=GCNConv(2, 2, cached=True, normalize=False))
    with pytest.raises(ValueError, match="unknown setting"):
        StructureLearner(adj, y, train, lamda=1.0)
    for bad in (dict(lam=-1.0), dict(lam=float("nan")), dict(min_sparsity=2.0)):
        with pytest.raises(ValueError, match=next(iter(bad))):
            StructureLearner(adj, y, train, **bad)
    ignoring = torch.nn.Linear(2, 2)                              # uses no edge weight at all
    learner = StructureLearner(adj, y, train, gate_start=0, distill=0.0)
    out = ignoring(x)
    adj()
    F.cross_entropy(out[train], y[train]).backward()
    with pytest.warns(UserWarning, match="no gradient"):
        learner.step(out.detach(), 0.5)


def _two_passes_per_epoch(monkeypatch):
    calls = []
    values = GatedAdjacency._values
    monkeypatch.setattr(GatedAdjacency, "_values",
                        lambda self, *a: calls.append(1) or values(self, *a))
    return calls


def test_one_adjacency_evaluation_per_training_step_and_per_evaluation(monkeypatch):
    x, ei, y, train, val, test = two_communities()
    calls = _two_passes_per_epoch(monkeypatch)
    fit_structure(x, ei, y, train, val, test, config=dict(epochs=12, gate_start=4, warmup=2),
                  seed=0)
    assert len(calls) == 2 * 12                                   # penalty and sparsity reuse


def test_drop_in_example_loop_equals_fit_structure():
    example = _example()
    x, ei, y, train, val, test = two_communities()
    cfg = dict(STRUCTURE_DEFAULTS, epochs=30, gate_start=10, warmup=5, threshold_lr=0.1,
               min_sparsity=0.05)
    make = lambda f, c: example.GCN(f, cfg["hidden"], c)          # noqa: E731
    ref = fit_structure(x, ei, y, train, val, test, config=cfg, seed=4, model=make)

    from graphsparse.structure.learner import LEARNER_DEFAULTS
    from graphsparse.utils import seed_everything
    from torch_geometric.data import Data
    data = Data(x=x, edge_index=ei, y=y, train_mask=train, val_mask=val, test_mask=test)
    seed_everything(4)
    adj = build_adjacency(ei, x.size(0), x.size(1), cfg)
    model = make(x.size(1), 2)
    learner = StructureLearner(adj, y, train, x=x, model=model,
                               **{k: cfg[k] for k in LEARNER_DEFAULTS})
    opt = torch.optim.Adam([dict(params=list(model.parameters()), lr=cfg["lr"],
                                 weight_decay=cfg["weight_decay"]), *learner.param_groups()])
    vals = []
    for _ in range(cfg["epochs"]):
        example.train(model, opt, adj, learner, data)
        vals.append(example.test(model, adj, learner, data)[1])
    best = learner.restore()
    assert vals == [h["val_acc"] for h in ref.history]
    assert best["epoch"] == ref.epoch and best["sparsity"] == ref.edge_sparsity
    assert torch.equal(best["values"], ref.edge_values)
    assert ref.edge_sparsity >= 0.05 and (ref.edge_values == 0).any()


def _interrupt_at(monkeypatch, epoch, how):
    original = StructureLearner.step

    def step(self, out, metric=None):
        result = original(self, out, metric)
        if self.epoch == epoch:
            if how == "signal":
                os.kill(os.getpid(), signal.SIGINT)              # Ctrl-C in the middle of a run
            else:
                raise KeyboardInterrupt                          # a crash between checkpoints
        return result
    monkeypatch.setattr(StructureLearner, "step", step)


@pytest.mark.parametrize("how", ["signal", "crash"])
def test_resume_is_bit_identical(tmp_path, monkeypatch, how):
    x, ei, y, train, val, test = two_communities()
    cfg = dict(epochs=30, gate_start=8, warmup=5, threshold_lr=0.1, min_sparsity=0.05)
    full = fit_structure(x, ei, y, train, val, test, config=cfg, seed=2)
    ckpt = tmp_path / "run.pt"
    with monkeypatch.context() as m:
        _interrupt_at(m, 17, how)
        with pytest.raises(KeyboardInterrupt):
            fit_structure(x, ei, y, train, val, test, config=cfg, seed=2, checkpoint=ckpt,
                          checkpoint_every=10)
    from graphsparse.utils.checkpoint import load_checkpoint
    saved_epoch = load_checkpoint(ckpt)["learner"]["epoch"]
    assert saved_epoch == (17 if how == "signal" else 10)
    resumed = fit_structure(x, ei, y, train, val, test, config=cfg, seed=2, checkpoint=ckpt,
                            resume=True)
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in full.history]
    assert resumed.epoch == full.epoch and torch.equal(resumed.edge_values, full.edge_values)
    for a, b in zip(resumed.model.state_dict().values(), full.model.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="other settings"):
        fit_structure(x, ei, y, train, val, test, config=dict(cfg, lam=0.5), seed=2,
                      checkpoint=ckpt, resume=True)


def test_fit_structure_leaves_the_global_rng_alone():
    x, ei, y, train, val, test = two_communities()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    fit_structure(x, ei, y, train, val, test, config=dict(epochs=3, gate_start=1), seed=0)
    assert torch.equal(torch.rand(3), expected)
