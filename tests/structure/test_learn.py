"""learn_structure: the learned graph (not the input) is exported, the
validation nodes are held out, everything is checked before training, the
outputs are all or nothing, the caller's RNG is untouched, checkpoints are
plumbed through, and summary.json carries the provenance."""
import csv
import inspect
import json
import random
from collections import Counter, defaultdict

import numpy as np
import pytest
import torch

import graphsparse.structure.learn as learn_mod
from graphsparse.structure.io import karate_club, load_data_file
from graphsparse.structure.learn import (CHECKPOINT_DIR, OUTPUT_FILES, _write_outputs,
                                         learn_structure, split_labelled)
from graphsparse.structure.train import DEFAULT_RECIPES, select_structure

PRUNES = dict(epochs=120, gate_start=30, warmup=20)   # karate: prunes about 20% in ~4 s


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny graphs: one thread is fastest, and on a loaded machine two threads
    spin-wait for each other (10x slower)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


class _TrainingStarted(Exception):
    pass


def _no_training(*args, **kwargs):
    raise _TrainingStarted


def _draws():
    return torch.rand(3).tolist(), random.random(), np.random.rand(2).tolist()


# ----------------------------------------------------------------- split_labelled

def test_split_labelled_is_a_stratified_disjoint_partition():
    y = torch.tensor([0] * 8 + [1] * 4 + [2] * 2 + [3] + [-1] * 5)
    train, val = split_labelled(y, 0.25, seed=0)
    assert not (train & val).any()
    assert torch.equal(train | val, y >= 0)               # unlabelled in neither
    counts = {c: int((val & (y == c)).sum()) for c in range(4)}
    assert counts == {0: 2, 1: 1, 2: 1, 3: 0}             # round(n/4), >= 1 if n >= 2, < n
    assert all(int((train & (y == c)).sum()) >= 1 for c in range(4))
    again = split_labelled(y, 0.25, seed=0)
    assert torch.equal(again[0], train) and torch.equal(again[1], val)
    others = [split_labelled(y, 0.25, seed=s)[1] for s in range(1, 6)]
    assert any(not torch.equal(v, val) for v in others)   # the seed matters
    state = torch.get_rng_state()
    split_labelled(y, 0.5, seed=3)
    assert torch.equal(torch.get_rng_state(), state)      # private generator


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5, float("nan"), True])
def test_split_labelled_rejects_bad_fractions(bad):
    with pytest.raises(ValueError, match="'val_fraction'"):
        split_labelled(torch.tensor([0, 0, 1, 1]), bad, seed=0)


def test_split_labelled_zero_fraction_and_single_nodes():
    y = torch.tensor([0, 0, 1, 1, 2])
    train, val = split_labelled(y, 0.0, seed=0)
    assert not val.any() and torch.equal(train, y >= 0)
    train, val = split_labelled(torch.tensor([0, 1, 2]), 0.5, seed=0)
    assert not val.any() and train.all()


# ----------------------------------------------------------------- one real run, many checks

@pytest.fixture(scope="module")
def karate_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("karate") / "out"
    masks = {}

    def spy(x, edge_index, y, train_mask, val_mask, *args, **kwargs):
        masks.update(train=train_mask.clone(), val=val_mask.clone())
        return select_structure(x, edge_index, y, train_mask, val_mask, *args, **kwargs)

    torch.manual_seed(123), random.seed(123), np.random.seed(123)
    expected = _draws()
    torch.manual_seed(123), random.seed(123), np.random.seed(123)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(learn_mod, "select_structure", spy)
        summary = learn_structure(out=out, config=PRUNES, progress=False, plot=False,
                                  verbose=False)
    after = _draws()
    return dict(summary=summary, out=out, masks=masks, expected=expected, after=after)


def _csv_rows(out):
    with open(out / "learned_edges.csv") as f:
        return list(csv.DictReader(f))


def test_exports_the_learned_graph_not_the_input(karate_run):
    s, out = karate_run["summary"], karate_run["out"]
    e = s["edges"]
    assert 0 < e["original_removed"] and e["original_kept"] < e["original"]   # it pruned
    rows = _csv_rows(out)
    nonloop = [r for r in rows if r["source"] != r["target"]]
    assert len(nonloop) == e["original_kept"]
    assert len(rows) - len(nonloop) == e["self_loops_kept"]
    sums = defaultdict(float)                  # row normalization: incoming weights sum to 1
    for r in rows:
        sums[r["target"]] += float(r["weight"])
    assert len(sums) == 34 and all(abs(v - 1) < 1e-4 for v in sums.values())
    data = load_data_file(out / "learned_graph.pt")          # loads safely, too
    assert data.edge_index.size(1) == len(rows)
    pairs = [(data.node_ids[j], data.node_ids[i]) for j, i in data.edge_index.t().tolist()]
    assert pairs == [(r["source"], r["target"]) for r in rows]
    torch.testing.assert_close(data.edge_weight, torch.tensor([float(r["weight"]) for r in rows]),
                               rtol=1e-5, atol=1e-6)


def test_kept_degree_is_of_the_learned_graph(karate_run):
    s, out = karate_run["summary"], karate_run["out"]
    learned = Counter(r["target"] for r in _csv_rows(out) if r["source"] != r["target"])
    assert s["kept_degree"] == {str(i): learned.get(str(i), 0) for i in range(34)}
    gi = karate_club()
    given = torch.bincount(gi.edge_index[1], minlength=34).tolist()
    assert any(s["kept_degree"][str(i)] < given[i] for i in range(34))
    assert all(s["kept_degree"][str(i)] <= given[i] for i in range(34))


def test_validation_nodes_are_held_out(karate_run):
    s, m = karate_run["summary"], karate_run["masks"]
    labelled = karate_club().y >= 0
    assert not (m["train"] & m["val"]).any() and m["val"].any()
    assert torch.equal(m["train"] | m["val"], labelled)
    assert s["num_val_labels"] == int(m["val"].sum()) == 2
    assert s["num_train_labels"] == int(m["train"].sum()) == 6


def test_caller_rng_is_untouched(karate_run):
    assert karate_run["after"] == karate_run["expected"]


def test_summary_provenance_and_strict_json(karate_run):
    out = karate_run["out"]
    def no_nan(c):
        raise AssertionError(f"non-JSON constant {c}")
    s = json.loads((out / "summary.json").read_text(), parse_constant=no_nan)
    assert s["seed"] == 0
    p = s["provenance"]
    assert p["seed"] == 0 and p["settings"]["config"] == PRUNES
    assert p["settings"]["val_fraction"] == 0.25
    assert p["settings"]["recipes"] == list(DEFAULT_RECIPES)
    assert p["settings"]["selected_settings"] == s["settings"]
    assert p["versions"]["torch"] == torch.__version__ and p["versions"]["torch_geometric"]
    assert p["inputs"] == {}                          # karate: no input files
    assert sorted(x.name for x in out.iterdir()) == sorted(set(OUTPUT_FILES) - {"graph.png"})


# ----------------------------------------------------------------- checked before training

def _graph(tmp_path, labels="a,x\nb,x\nc,y\nd,y\n"):
    (tmp_path / "e.csv").write_text("a,b\nb,c\nc,d\nd,a\n")
    (tmp_path / "l.csv").write_text(labels)
    return tmp_path / "e.csv", tmp_path / "l.csv"


@pytest.mark.parametrize("kw,match", [
    (dict(config=dict(epochs=0)), "'--epochs'"),
    (dict(config=dict(epochs=-3)), "'--epochs'"),
    (dict(config=dict(epochs=2.5)), "'--epochs'"),
    (dict(config=dict(lam=-1.0)), "'--lam'"),
    (dict(config=dict(lam=float("nan"))), "'--lam'"),
    (dict(config=dict(lam=float("inf"))), "'--lam'"),
    (dict(val_fraction=0.0), "'--val-fraction'.*at least one"),
    (dict(val_fraction=1.0), "'--val-fraction'"),
    (dict(val_fraction=float("nan")), "'--val-fraction'"),
    (dict(recipes=()), "'--recipe'"),
    (dict(recipes=("nope",)), "'--recipe'"),
])
def test_bad_settings_stop_before_training(tmp_path, monkeypatch, kw, match):
    monkeypatch.setattr(learn_mod, "select_structure", _no_training)
    with pytest.raises(ValueError, match=match):
        learn_structure(out=tmp_path / "o", progress=False, plot=False, verbose=False, **kw)
    assert not (tmp_path / "o").exists()


def test_empty_validation_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(learn_mod, "select_structure", _no_training)
    edges, labels = _graph(tmp_path, "a,x\nc,y\n")      # one labelled node per class
    with pytest.raises(ValueError, match="no labelled node is left for validation"):
        learn_structure(edges, labels=labels, out=tmp_path / "o", verbose=False)


def test_out_checked_before_training(tmp_path, monkeypatch):
    monkeypatch.setattr(learn_mod, "select_structure", _no_training)
    edges, labels = _graph(tmp_path)
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ValueError, match="'--out'.*existing file"):
        learn_structure(edges, labels=labels, out=tmp_path / "afile", verbose=False)
    old = tmp_path / "old"
    old.mkdir()
    (old / "graph.png").write_text("a picture of another graph")
    with pytest.raises(ValueError, match="'--out'.*not empty.*graph.png.*--overwrite"):
        learn_structure(edges, labels=labels, out=old, verbose=False)
    assert (old / "graph.png").exists()
    with pytest.raises(_TrainingStarted):      # overwrite: the old outputs go first
        learn_structure(edges, labels=labels, out=old, verbose=False, overwrite=True)
    assert list(old.iterdir()) == []
    (old / CHECKPOINT_DIR).mkdir()
    with pytest.raises(ValueError, match="checkpoint of an interrupted run.*--resume"):
        learn_structure(edges, labels=labels, out=old, verbose=False)


def test_outputs_are_all_or_nothing(tmp_path, monkeypatch):
    gi = karate_club()
    ei = gi.edge_index
    w = torch.full((ei.size(1),), 0.5)

    def interrupted(path, text):
        raise KeyboardInterrupt
    monkeypatch.setattr(learn_mod, "atomic_write_text", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _write_outputs(tmp_path, gi, ei, w, {"val_acc": 1.0}, None, plot=False)
    assert list(tmp_path.iterdir()) == []                # csv and .pt removed, no temp files
    monkeypatch.undo()
    with pytest.raises(ValueError):                      # NaN: refused before any file
        _write_outputs(tmp_path, gi, ei, w, {"val_acc": float("nan")}, None, plot=False)
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------- checkpoint plumbing

def _interrupting_select(calls, write_checkpoint=True):
    def fake(x, edge_index, y, train_mask, val_mask, test_mask=None, config=None, seed=0,
             recipes=(), progress=False, desc="", checkpoint_dir=None, resume=False):
        calls.append(dict(checkpoint_dir=checkpoint_dir, resume=resume,
                          deterministic=torch.are_deterministic_algorithms_enabled()))
        torch.manual_seed(999), random.seed(999), np.random.seed(999)   # like seed_everything
        if write_checkpoint:
            (checkpoint_dir / "state.pt").write_text("ck")
        raise KeyboardInterrupt
    return fake


def test_checkpoint_dir_and_resume_passed_and_rng_restored(tmp_path, monkeypatch):
    edges, labels = _graph(tmp_path)
    calls = []
    monkeypatch.setattr(learn_mod, "select_structure", _interrupting_select(calls))
    torch.manual_seed(5), random.seed(5), np.random.seed(5)
    expected = _draws()
    torch.manual_seed(5), random.seed(5), np.random.seed(5)
    with pytest.raises(KeyboardInterrupt):
        learn_structure(edges, labels=labels, out=tmp_path / "o", verbose=False,
                        deterministic=True)
    assert _draws() == expected                     # restored even when interrupted
    assert not torch.are_deterministic_algorithms_enabled()
    assert calls == [dict(checkpoint_dir=tmp_path / "o" / CHECKPOINT_DIR, resume=False,
                          deterministic=True)]
    with pytest.raises(KeyboardInterrupt):          # the checkpoint folder is allowed on resume
        learn_structure(edges, labels=labels, out=tmp_path / "o", verbose=False, resume=True)
    assert calls[-1]["resume"] is True and calls[-1]["deterministic"] is False


def test_no_checkpoint_arguments_for_an_older_select_structure(tmp_path, monkeypatch):
    edges, labels = _graph(tmp_path)
    seen = []

    def old_select(x, edge_index, y, train_mask, val_mask, test_mask=None, config=None, seed=0,
                   recipes=(), progress=False, desc=""):
        seen.append(True)
        raise _TrainingStarted
    monkeypatch.setattr(learn_mod, "select_structure", old_select)
    with pytest.raises(_TrainingStarted):
        learn_structure(edges, labels=labels, out=tmp_path / "o", verbose=False)
    assert seen and not (tmp_path / "o" / CHECKPOINT_DIR).exists()
    with pytest.raises(ValueError, match="'--resume'.*does not write checkpoints"):
        learn_structure(edges, labels=labels, out=tmp_path / "o2", verbose=False, resume=True)


def test_real_select_structure_signature_is_detected():
    params = inspect.signature(select_structure).parameters
    kwargs = learn_mod._select_kwargs(learn_mod.Path("o"), resume=False)
    assert bool(kwargs) == ("checkpoint_dir" in params and "resume" in params)
