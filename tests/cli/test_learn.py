import csv
import json
import subprocess
import sys

import torch

from graphsparse.cli import main
from graphsparse.structure import RECIPES, STRUCTURE_DEFAULTS, learn_structure

FAST = ["--epochs", "40", "--quiet"]


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
    for name in ("learned_edges.csv", "learned_graph.pt", "summary.json", "graph.png"):
        assert (out / name).stat().st_size > 0
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["kept_degree"]) == set(ids)
    with open(out / "learned_edges.csv") as f:
        kept = list(csv.DictReader(f))
    assert kept and all(r["source"] in ids and r["target"] in ids for r in kept)
    assert all(float(r["weight"]) > 0 for r in kept)
    data = torch.load(out / "learned_graph.pt", weights_only=False)
    assert data.node_ids == ids and data.edge_index.size(1) == len(kept)
    e = summary["edges"]
    assert e["original_kept"] + e["original_removed"] == e["original"] == 2 * len(rows)


def test_cli_bad_input_exit_code(tmp_path, capsys):
    edges = tmp_path / "edges.csv"
    edges.write_text("a,b\nb\n")
    labels = tmp_path / "labels.csv"
    labels.write_text("a,0\nb,1\n")
    assert main(["learn", str(edges), "--labels", str(labels), "--out", str(tmp_path)]) == 2
    assert "edges.csv:2" in capsys.readouterr().err


def test_api_on_karate_club(tmp_path):
    summary = learn_structure(out=tmp_path, config=dict(epochs=60), progress=False,
                              plot=False, verbose=False)
    assert summary["num_nodes"] == 34
    assert summary["unlabelled_acc"] > 0.7          # chance is about 0.5
    assert 0.0 <= summary["edge_sparsity"] < 1.0
    # the settings reported are those of the recipe chosen, with the override
    chosen = summary["recipe"]
    assert chosen in RECIPES
    assert summary["settings"] == {**STRUCTURE_DEFAULTS, **RECIPES[chosen], "epochs": 60}


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


def test_console_script_entry_point():
    out = subprocess.run([sys.executable, "-m", "graphsparse.cli", "--help"],
                         capture_output=True, text=True)
    assert out.returncode == 0 and "learn" in out.stdout
