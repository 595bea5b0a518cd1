import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import networkx as nx
import pytest
import torch

import graphsparse.structure.learn as learn_mod
from graphsparse.cli import main
from graphsparse.structure import RECIPES, STRUCTURE_DEFAULTS, learn_structure
from graphsparse.structure.io import load_data_file
from graphsparse.utils.io import file_sha256

FAST = ["--epochs", "40", "--quiet"]
PRUNES = dict(epochs=120, gate_start=30, warmup=20)   # karate: prunes about 20% in ~4 s
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)     # tiny graphs; two threads on a loaded machine are 10x slower
    yield
    torch.set_num_threads(n)


def _fail_if_trained(*args, **kwargs):
    raise AssertionError("training started although the input is bad")


def test_cli_end_to_end_with_string_ids(tmp_path):
    edges = tmp_path / "edges.csv"
    ids = [f"n{i}" for i in range(12)]
    rows = [(ids[i], ids[(i + 1) % 6]) for i in range(6)] + \
           [(ids[6 + i], ids[6 + (i + 1) % 6]) for i in range(6)] + [(ids[0], ids[6])]
    edges.write_text("source,target\n" + "".join(f"{u},{v}\n" for u, v in rows))
    labels = tmp_path / "labels.csv"
    labels.write_text("n0,left\nn1,left\nn2,left\nn6,right\nn7,right\nn8,right\n")
    out = tmp_path / "out"
    assert main(["learn", str(edges), "--labels", str(labels), "--out", str(out), *FAST]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(learn_mod.OUTPUT_FILES)
    for name in learn_mod.OUTPUT_FILES:
        assert (out / name).stat().st_size > 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_nodes"] == 12                  # the header made no phantom nodes
    assert set(summary["kept_degree"]) == set(ids)
    with open(out / "learned_edges.csv") as f:
        kept = list(csv.DictReader(f))
    assert kept and all(r["source"] in ids and r["target"] in ids for r in kept)
    assert all(float(r["weight"]) > 0 for r in kept)
    data = load_data_file(out / "learned_graph.pt")    # weights_only: our own output loads
    assert data.node_ids == ids and data.edge_index.size(1) == len(kept)
    e = summary["edges"]
    assert e["original_kept"] + e["original_removed"] == e["original"] == 2 * len(rows)
    assert e["original_kept"] == sum(r["source"] != r["target"] for r in kept)
    prov = summary["provenance"]
    assert prov["inputs"] == {str(edges): dict(sha256=file_sha256(edges),
                                               bytes=edges.stat().st_size),
                              str(labels): dict(sha256=file_sha256(labels),
                                                bytes=labels.stat().st_size)}
    assert summary["seed"] == 0 and prov["settings"]["config"] == {"epochs": 40}
    # a second run into the same folder is refused; --overwrite replaces the outputs
    assert main(["learn", str(edges), "--labels", str(labels), "--out", str(out), *FAST]) == 2
    assert main(["learn", str(edges), "--labels", str(labels), "--out", str(out), "--no-plot",
                 "--overwrite", *FAST]) == 0
    assert not (out / "graph.png").exists()            # the old picture did not survive


def test_cli_bad_input_exit_code(tmp_path, capsys):
    edges = tmp_path / "edges.csv"
    edges.write_text("a,b\nb\n")
    labels = tmp_path / "labels.csv"
    labels.write_text("a,0\nb,1\n")
    assert main(["learn", str(edges), "--labels", str(labels), "--out",
                 str(tmp_path / "o")]) == 2
    assert "edges.csv:2" in capsys.readouterr().err


def test_api_on_karate_club(tmp_path):
    summary = learn_structure(out=tmp_path, config=PRUNES, progress=False,
                              plot=False, verbose=False)
    assert summary["num_nodes"] == 34
    assert summary["unlabelled_acc"] > 0.7          # chance is about 0.5
    # it pruned: some of the 156 edge entries are exactly zero, not all
    e = summary["edges"]
    assert 0 < e["original_removed"] < e["original"]
    assert 0.0 < summary["edge_sparsity"] < 1.0
    assert summary["edge_sparsity"] == pytest.approx(e["original_removed"] / e["original"])
    # the settings reported are those of the recipe chosen, with the override
    chosen = summary["recipe"]
    assert chosen in RECIPES
    assert summary["settings"] == {**STRUCTURE_DEFAULTS, **RECIPES[chosen], **PRUNES}
    # the same-run baselines, on the same held-out nodes, and a verdict that matches them
    b = summary["baselines"]
    gcn, mlp = b["gcn"]["val_acc"], b["mlp"]["val_acc"]
    assert 0.0 <= gcn <= 1.0 and 0.0 <= mlp <= 1.0
    helps = summary["val_acc"] > max(gcn, mlp)
    assert ("helps" in b["verdict"]) == helps
    assert b["gcn"]["unlabelled_acc"] > b["mlp"]["unlabelled_acc"]   # identity features: the
                                                                      # MLP cannot generalize


def test_baselines_mlp_ignores_the_graph_and_the_verdict_names_the_winner():
    from types import SimpleNamespace
    torch.manual_seed(0)
    n = 60
    y = torch.arange(n) % 2
    x = torch.randn(n, 5) + y[:, None].float()
    ei = torch.randint(0, n, (2, 300))
    train = torch.zeros(n, dtype=torch.bool)
    train[:20] = True
    val = ~train
    one = learn_mod._baselines(SimpleNamespace(x=x, edge_index=ei), y, train, val, None, 0, 2.0)
    other = learn_mod._baselines(SimpleNamespace(x=x, edge_index=ei.flip(0)[:, :50]), y, train,
                                 val, None, 0, -1.0)
    assert one["mlp"] == other["mlp"] and one["gcn"] != other["gcn"]
    assert one["verdict"] == "the learned graph helps"
    best = "plain GCN" if other["gcn"]["val_acc"] >= other["mlp"]["val_acc"] else "MLP"
    assert "does not help" in other["verdict"] and best in other["verdict"]


def test_cli_knn_candidates_and_no_baselines(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["learn", "--out", str(out), "--recipe", "preserve", "--knn", "2",
                 "--no-baselines", "--no-plot", *FAST]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert "baselines" not in summary and summary["settings"]["knn"] == 2
    e = summary["edges"]
    assert e["original"] == 156 and 0 < e["new_candidates"]   # 78 undirected input edges
    assert 0 <= e["new_kept"] <= e["new_candidates"]
    assert "[compare]" not in capsys.readouterr().out


def test_cli_single_recipe_and_overrides(tmp_path):
    out = tmp_path / "out"
    assert main(["learn", "--out", str(out), "--recipe", "denoise", "--lam", "0.01",
                 "--no-plot", *FAST]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["recipe"] == "denoise"
    s = summary["settings"]
    assert s["lam"] == 0.01 and s["epochs"] == 40
    assert s["distill"] == RECIPES["denoise"]["distill"]
    assert s["normalization"] == STRUCTURE_DEFAULTS["normalization"]


def test_cli_sinkhorn_with_degree_marginals(tmp_path):
    out = tmp_path / "out"
    assert main(["learn", "--out", str(out), "--recipe", "preserve", "--normalization",
                 "sinkhorn", "--marginals", "degree", "--no-plot", "--no-baselines", *FAST]) == 0
    s = json.loads((out / "summary.json").read_text())["settings"]
    assert s["normalization"] == "sinkhorn" and s["marginals"] == "degree"


def test_console_script_entry_point(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0 and "learn" in capsys.readouterr().out
    out = subprocess.run([sys.executable, "-m", "graphsparse.cli", "learn", "--help"],
                         capture_output=True, text=True)
    assert out.returncode == 0 and all(r in out.stdout for r in RECIPES)


@pytest.mark.parametrize("args,match", [
    (["--epochs", "0"], "'--epochs'"),
    (["--epochs", "-5"], "'--epochs'"),
    (["--lam", "-1"], "'--lam'"),
    (["--lam", "nan"], "'--lam'"),
    (["--val-fraction", "0"], "'--val-fraction'"),
    (["--val-fraction", "1"], "'--val-fraction'"),
    (["--recipe", "nope"], "'--recipe'"),
    (["--knn", "-1"], "'--knn'"),
    (["--marginals", "degree"], "'--marginals degree' needs '--normalization sinkhorn'"),
    (["--marginals", "degree", "--normalization", "auto"], "'--marginals degree'"),
])
def test_cli_bad_settings_exit_2_before_training(tmp_path, monkeypatch, capsys, args, match):
    monkeypatch.setattr(learn_mod, "select_structure", _fail_if_trained)
    assert main(["learn", "--out", str(tmp_path / "o"), "--quiet", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("graphsparse learn: error: ") and match in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_cli_bad_inputs_exit_2_before_training(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(learn_mod, "select_structure", _fail_if_trained)
    g = nx.path_graph(4)
    for i in g.nodes:
        g.nodes[i].update(label=i % 2, x=float("nan") if i == 2 else 1.0)
    nx.write_graphml(g, tmp_path / "nan.graphml")
    from torch_geometric.data import Data
    torch.save(Data(x=torch.ones(3, 1), edge_index=torch.tensor([[0, 1], [1, 2]]),
                    y=torch.tensor([0, 1, 1])), tmp_path / "d.pt")
    (tmp_path / "l.csv").write_text("0,a\n1,b\n")
    (tmp_path / "afile").write_text("x")
    cases = [([str(tmp_path / "nan.graphml")], "node '2' has attribute 'x'"),
             ([str(tmp_path / "d.pt"), "--labels", str(tmp_path / "l.csv")],
              "--labels do not apply to a .pt input"),
             ([str(tmp_path / "d.pt"), "--directed"], "--directed do not apply"),
             (["--out", str(tmp_path / "afile")], "'--out'"),
             (["--out", str(tmp_path / "afile" / "sub")], "'--out'")]
    for i, (args, match) in enumerate(cases):
        if "--out" not in args:
            args = args + ["--out", str(tmp_path / f"o{i}")]
        assert main(["learn", "--quiet", *args]) == 2, args
        err = capsys.readouterr().err
        assert match in err and err.count("\n") == 1, (args, err)


def test_cli_out_errors_come_before_torch_is_imported(tmp_path):
    """With ``graphsparse``'s own __init__ set aside (stand-in package), the
    CLI reports a bad --out without importing torch: the check costs no
    start-up time."""
    (tmp_path / "afile").write_text("x")
    code = ("import sys, types\n"
            "pkg = types.ModuleType('graphsparse'); pkg.__path__ = [sys.argv[1]]\n"
            "sys.modules['graphsparse'] = pkg\n"
            "from graphsparse.cli.main import main\n"
            "rc = main(['learn', '--out', sys.argv[2]])\n"
            "print(rc, 'torch' in sys.modules)\n")
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", code, str(ROOT / "graphsparse"),
                          str(tmp_path / "afile")], capture_output=True, text=True)
    assert res.stdout.split() == ["2", "False"], res.stderr
    assert "is an existing file" in res.stderr
    assert time.perf_counter() - t0 < 10


def _interrupt(write_checkpoint):
    def fake(*args, checkpoint_dir=None, resume=False, **kwargs):
        if write_checkpoint:
            (checkpoint_dir / "state.pt").write_text("ck")
        raise KeyboardInterrupt
    return fake


@pytest.mark.parametrize("saved", [True, False])
def test_cli_ctrl_c_prints_one_line_and_exits_130(tmp_path, monkeypatch, capsys, saved):
    monkeypatch.setattr(learn_mod, "select_structure", _interrupt(saved))
    out = tmp_path / "o"
    argv = ["learn", "--out", str(out), "--seed", "3", "--quiet"]
    assert main(argv) == 130
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    if saved:
        assert err.strip().endswith(f"resume with: graphsparse learn --out {out} --seed 3 "
                                    f"--quiet --resume")
        assert main(argv + ["--resume"]) == 130            # the resume is accepted
        assert "resume with" in capsys.readouterr().err
    else:
        assert "before a checkpoint was saved" in err
        assert list(out.iterdir()) == []           # a plain rerun works
        assert main(argv) == 130


def test_cli_normalization_auto_chooses_among_row_and_sym(tmp_path):
    # --normalization auto: every recipe under row and sym, the choice named
    # "recipe/normalization" in the summary with its settings
    out = tmp_path / "out"
    assert main(["learn", "--out", str(out), "--normalization", "auto", "--recipe", "preserve",
                 "--no-plot", "--no-baselines", *FAST]) == 0
    summary = json.loads((out / "summary.json").read_text())
    recipe, norm = summary["recipe"].split("/")
    assert recipe == "preserve" and norm in ("row", "sym")
    settings = summary["provenance"]["settings"]
    assert settings["normalizations"] == ["row", "sym"]
    assert settings["selected_settings"]["normalization"] == norm
    with pytest.raises(SystemExit) as exit_info:           # argparse refuses it
        main(["learn", "--out", str(tmp_path / "bad"), "--normalization", "rows"])
    assert exit_info.value.code == 2
