"""The structure benchmark's metrics, baselines and record format."""
import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

from graphsparse.testing import require_data

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def _load(name):
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCH))
    return module


base = _load("_baselines")


def _auc_pairs(score, y):
    """Brute force: share of (positive, negative) pairs ordered right, ties one half."""
    pos, neg = score[y == 1], score[y == 0]
    diff = pos.unsqueeze(1) - neg.unsqueeze(0)
    return float(((diff > 0).double() + 0.5 * (diff == 0).double()).mean())


def test_roc_auc_equals_pair_count():
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 2, (300,), generator=g)
    score = torch.randint(0, 20, (300,), generator=g).float() + y  # many ties
    assert base.roc_auc(score, y) == pytest.approx(_auc_pairs(score, y), abs=1e-12)
    assert base.roc_auc(y.float(), y) == 1.0 and base.roc_auc(-y.float(), y) == 0.0
    with pytest.raises(ValueError, match="both classes"):
        base.roc_auc(score, torch.zeros(300, dtype=torch.long))


def test_metric_value():
    logits = torch.tensor([[0.0, 1.0], [2.0, 0.0], [0.0, 3.0]])
    y = torch.tensor([1, 1, 0])
    assert base.metric_value("accuracy", logits, y) == pytest.approx(1 / 3)
    assert base.metric_value("roc_auc", logits, y) == pytest.approx(_auc_pairs(logits[:, 1] - logits[:, 0], y))
    with pytest.raises(ValueError, match="'metric'"):
        base.metric_value("f1", logits, y)


def test_gcn_operator_equals_gcnconv():
    from torch_geometric.nn import GCNConv
    g = torch.Generator().manual_seed(0)
    ei = torch.randint(0, 40, (2, 200), generator=g)
    x = torch.randn(40, 6, dtype=torch.float64, generator=g)
    ref = GCNConv(6, 3).double()
    ours = GCNConv(6, 3, normalize=False).double()
    ours.load_state_dict(ref.state_dict())
    adj = base.gcn_operator(ei, 40, dtype=torch.float64)
    assert torch.allclose(ours(x, adj), ref(x, ei), atol=1e-12)
    # gradients through the sparse product too
    xr = x.clone().requires_grad_()
    xo = x.clone().requires_grad_()
    ref(xr, ei).pow(2).sum().backward()
    ours(xo, adj).pow(2).sum().backward()
    assert torch.allclose(xo.grad, xr.grad, atol=1e-12)


def test_mlp_ignores_the_graph_and_resgcn_uses_it():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(30, 5, generator=g)
    a1 = base.gcn_operator(torch.randint(0, 30, (2, 90), generator=g), 30)
    a2 = base.gcn_operator(torch.randint(0, 30, (2, 90), generator=g), 30)
    mlp = base.ResidualNet(5, 3, hidden=8, graph=False).eval()
    assert torch.equal(mlp(x, a1), mlp(x, a2)) and torch.equal(mlp(x, a1), mlp(x))
    res = base.ResidualNet(5, 3, hidden=8, graph=True).eval()
    res.load_state_dict(mlp.state_dict())
    assert not torch.allclose(res(x, a1), res(x, a2))
    # identity "graph": the residual GCN is exactly the MLP
    eye = torch.eye(30).to_sparse_csr()
    assert torch.allclose(res(x, eye), mlp(x), atol=1e-6)


def test_selection_uses_validation_only():
    """Swapping the test labels changes the reported test metric, never the chosen epoch."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(60, 4, generator=g)
    y = (x[:, 0] > 0).long()
    train = torch.zeros(60, dtype=torch.bool)
    train[:30] = True
    val = torch.zeros(60, dtype=torch.bool)
    val[30:45] = True
    test = ~(train | val)
    runs = []
    for yt in (y, torch.where(test, 1 - y, y)):
        torch.manual_seed(0)
        model = base.ResidualNet(4, 2, hidden=8, num_layers=1, graph=False)
        runs.append(base.train_full_batch(model, lambda: model(x), yt, train, val, test,
                                          "accuracy", 15, 1e-2, 0.0))
    assert runs[0].epoch == runs[1].epoch and runs[0].val == runs[1].val
    assert runs[0].test == pytest.approx(1 - runs[1].test)


@pytest.mark.data
def test_benchmark_writes_records(tmp_path):
    require_data("heterophilous/chameleon_filtered/raw/chameleon_filtered.npz")
    bench = _load("structure")
    out = tmp_path / "structure.json"
    new = bench.main(["--datasets", "chameleon_filtered", "--seeds", "2", "--epochs", "2",
                      "--out", str(out)])
    records = json.loads(out.read_text())
    assert len(new) == len(records) == len(bench.METHODS)
    keys = {"dataset", "method", "metric", "mean", "std", "edge_sparsity", "added_edges",
            "seconds", "settings"}
    for r in records:
        assert keys <= set(r) and r["dataset"] == "chameleon_filtered"
        assert r["metric"] == "accuracy" and len(r["per_run"]) == 2
        assert r["settings"]["epochs"] == 2 and r["settings"]["runs_are"] == "splits"
        assert 0.0 <= r["mean"] <= 100.0
    # a second run of one method replaces its record and keeps the others
    bench.main(["--datasets", "chameleon_filtered", "--methods", "mlp", "--seeds", "1",
                "--epochs", "1", "--out", str(out)])
    again = json.loads(out.read_text())
    assert len(again) == len(records)
    assert [r["settings"]["runs"] for r in again if r["method"] == "mlp"] == [1]
    with pytest.raises(SystemExit):
        bench.main(["--methods", "nope", "--out", str(out)])


def test_sparse_features_same_model():
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(50, 40, generator=g) < 0.05).float()
    xs = base.sparse_features(x)
    assert xs.layout == torch.sparse_csr and torch.equal(xs.to_dense(), x)
    dense = torch.randn(5, 4)
    assert base.sparse_features(dense) is dense
    adj = base.gcn_operator(torch.randint(0, 50, (2, 150), generator=g), 50)
    for model in (base.GCN(40, 3, hidden=8), base.ResidualNet(40, 3, hidden=8)):
        model.eval()
        assert torch.allclose(model(xs, adj), model(x, adj), atol=1e-5)
    # dropout on the stored entries only: zeros stay zero, kept entries scaled by 1/(1-p)
    torch.manual_seed(0)
    d = base.feature_dropout(xs, 0.5, True).to_dense()
    assert torch.all(d[x == 0] == 0)
    kept = d[x != 0]
    assert set(kept.unique().tolist()) <= {0.0, 2.0}
    assert 0.3 < float((kept == 2.0).float().mean()) < 0.7
    assert base.feature_dropout(xs, 0.5, False) is xs


def _two_class_task(n, num_edges, num_train, num_val, seed):
    """A random graph whose features carry the class: data and split masks."""
    from torch_geometric.data import Data
    torch.manual_seed(seed)
    y = torch.arange(n) % 2
    data = Data(x=torch.randn(n, 4) + y[:, None].float(), y=y,
                edge_index=torch.randint(0, n, (2, num_edges)), num_nodes=n)
    train, val = (torch.zeros(n, dtype=torch.bool) for _ in range(2))
    train[:num_train], val[num_train:num_train + num_val] = True, True
    return data, train, val, ~(train | val)


def test_gated_keeps_the_recipe_of_best_validation():
    data, train, val, test = _two_class_task(50, 200, 20, 15, seed=0)
    bench = _load("structure")
    settings = dict(bench.METHODS["gated"].settings, epochs=6,
                    config=dict(gate_start=2, warmup=2))
    res = base.fit_gated(data, train, val, test, "accuracy", settings, seed=0)
    vals = res.extra["recipe_val"]
    from graphsparse.structure import DEFAULT_RECIPES
    assert list(vals) == list(DEFAULT_RECIPES) == settings["recipes"]
    assert res.extra["recipe"] == max(vals, key=lambda k: (vals[k], -list(vals).index(k)))
    assert res.val == vals[res.extra["recipe"]]
    assert res.test == res.extra["recipe_test"][res.extra["recipe"]]
    assert res.seconds >= res.extra["seconds_chosen"] > 0


def test_gated_norm_selects_among_recipes_and_normalizations(monkeypatch):
    data, train, val, test = _two_class_task(40, 160, 16, 12, seed=1)
    fit, seen = base._fit_gated_recipe, []

    def spy(data, x, train, val, test, metric, cfg, seed):
        seen.append(cfg["normalization"])
        return fit(data, x, train, val, test, metric, cfg, seed)
    monkeypatch.setattr(base, "_fit_gated_recipe", spy)
    bench = _load("structure")
    settings = dict(bench.METHODS["gated_norm"].settings, epochs=4, recipes=["preserve", "denoise"],
                    config=dict(gate_start=1, warmup=1))
    res = base.fit_gated(data, train, val, test, "accuracy", settings, seed=0)
    vals = res.extra["recipe_val"]
    assert list(vals) == ["preserve/row", "preserve/sym", "denoise/row", "denoise/sym"]
    assert seen == ["row", "sym", "row", "sym"]              # each run got its normalization
    assert res.extra["recipe"] == max(vals, key=lambda k: (vals[k], -list(vals).index(k)))
    assert res.test == res.extra["recipe_test"][res.extra["recipe"]]


def _spy_recipe_runs(monkeypatch) -> list:
    """Records ``(settings, result)`` of every configuration ``fit_gated`` trains."""
    fit, seen = base._fit_gated_recipe, []

    def spy(data, x, train, val, test, metric, cfg, seed):
        res = fit(data, x, train, val, test, metric, cfg, seed)
        seen.append((cfg, res))
        return res
    monkeypatch.setattr(base, "_fit_gated_recipe", spy)
    return seen


def test_gated_guard_adds_the_input_graph_and_skips_configurations(monkeypatch):
    data, train, val, test = _two_class_task(40, 160, 16, 12, seed=2)
    seen = _spy_recipe_runs(monkeypatch)
    bench = _load("structure")
    settings = dict(bench.METHODS["gated_guard"].settings, epochs=5,
                    recipes=["preserve", "denoise"], skip=["denoise/sym"],
                    config=dict(gate_start=1, warmup=1))
    res = base.fit_gated(data, train, val, test, "accuracy", settings, seed=0)
    assert list(res.extra["recipe_val"]) == ["preserve/row", "preserve/sym", "denoise/row",
                                             "input/sym"]
    cfg, run = seen[-1]
    # the input graph: the preserve recipe whose gates never train, any sparsity
    assert cfg["gate_start"] == cfg["epochs"] == 5 and cfg["min_sparsity"] == 0.0
    assert cfg["normalization"] == "sym" and cfg["lam"] == seen[0][0]["lam"]
    assert run.edge_sparsity == 0.0
    assert seen[0][0]["gate_start"] == 1                     # the others train their gates
    vals = res.extra["recipe_val"]
    assert res.extra["recipe"] == max(vals, key=lambda k: (vals[k], -list(vals).index(k)))


def test_gated_dagnn_configurations_and_recipe_overrides(monkeypatch):
    data, train, val, test = _two_class_task(40, 160, 16, 12, seed=3)
    seen = _spy_recipe_runs(monkeypatch)
    bench = _load("structure")
    settings = bench.METHODS["gated_dagnn"].settings
    over = dict(settings["config"], epochs=4, gate_start=1, warmup=1)
    res = base.fit_gated(data, train, val, test, "accuracy", dict(settings, config=over),
                         seed=0)
    names = list(res.extra["recipe_val"])
    assert names == ["preserve+dagnn/sym", "preserve+dagnn/row", "denoise+dagnn/sym",
                     "denoise+dagnn/row"]
    assert len(names) <= 8                                       # the budget
    by_name = dict(zip(names, seen, strict=True))
    from graphsparse.structure import recipe_config
    for name, (cfg, _) in by_name.items():
        recipe = name.partition("/")[0]
        assert cfg["architecture"] == "dagnn" and cfg["min_sparsity"] == 0.3
        # each recipe keeps its own penalty weight and schedule under the overrides
        assert cfg["lam"] == recipe_config(recipe)["lam"] and cfg["gate_start"] == 1
        assert cfg["distill"] == recipe_config(recipe)["distill"]
    # the same-run baseline: the same model on the input graph, gates never trained
    base_settings = dict(bench.METHODS["dagnn"].settings)
    base_settings["config"] = dict(base_settings["config"], epochs=4)
    run = base.fit_gated(data, train, val, test, "accuracy", base_settings, seed=0)
    assert list(run.extra["recipe_val"]) == ["input/sym"] and run.edge_sparsity == 0.0
    assert seen[-1][0]["architecture"] == "dagnn" and seen[-1][0]["gate_start"] == 4


def test_sinkhorn_degree_label_sets_the_marginals(monkeypatch):
    data, train, val, test = _two_class_task(40, 160, 16, 12, seed=4)
    seen = _spy_recipe_runs(monkeypatch)
    bench = _load("structure")
    settings = bench.METHODS["gated_dagnn_sk"].settings
    over = dict(settings["config"], epochs=3, gate_start=1, warmup=1)
    res = base.fit_gated(data, train, val, test, "accuracy",
                         dict(settings, recipes=["preserve+dagnn"], config=over), seed=0)
    assert list(res.extra["recipe_val"]) == ["preserve+dagnn/sym", "preserve+dagnn/row",
                                             "preserve+dagnn/sinkhorn+degree"]
    assert [(c["normalization"], c["marginals"]) for c, _ in seen] == [
        ("sym", "uniform"), ("row", "uniform"), ("sinkhorn", "degree")]
    assert all(c["architecture"] == "dagnn" and c["min_sparsity"] == 0.3 for c, _ in seen)
    # the study's single-configuration methods
    for norm, marg in (("row", "uniform"), ("sinkhorn_degree", "degree")):
        seen.clear()
        s = dict(bench.METHODS[f"preserve_{norm}"].settings, epochs=3,
                 config=dict(bench.METHODS[f"preserve_{norm}"].settings["config"],
                             gate_start=1, warmup=1))
        base.fit_gated(data, train, val, test, "accuracy", s, seed=0)
        assert len(seen) == 1 and seen[0][0]["marginals"] == marg
