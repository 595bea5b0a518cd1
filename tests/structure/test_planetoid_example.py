"""The Planetoid example end to end in quick mode (1 seed, 30 epochs) on the
real Cora files: JSON keys, noise bookkeeping and accuracy above chance."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from graphsparse.structure import DEFAULT_RECIPES as RECIPES
from graphsparse.testing import require_data

ROOT = Path(__file__).resolve().parents[2]
KEYS = {"dataset", "method", "normalization", "test_acc_mean", "test_acc_std",
        "edge_sparsity", "seconds_per_epoch", "settings"}


def run_example(tmp_path, *args):
    require_data("planetoid/Cora/raw")
    env = dict(os.environ, OMP_NUM_THREADS="1", MPLBACKEND="Agg")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "planetoid.py"), "--dataset", "Cora", "--quick",
         "--no-progress", "--device", "cpu", "--out", str(tmp_path), *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.slow
def test_quick_clean(tmp_path):
    out = run_example(tmp_path, "--normalizations", "sinkhorn", "row")
    report = json.loads((tmp_path / "planetoid_cora.json").read_text())
    records = report["records"]
    assert [r["method"] for r in records] == ["gcn", "gated-sinkhorn", "gated-row"]
    for r in records:
        assert KEYS <= set(r), KEYS - set(r)
        assert r["dataset"] == "Cora" and r["num_seeds"] == 1
        assert r["test_acc_mean"] > 50.0          # chance is about 30% (largest class)
        assert 0.0 <= r["edge_sparsity"] <= 1.0
        assert "added_edges_pruned" not in r
    for r in records[1:]:
        # both recipes ran; the chosen one is recorded per seed
        assert set(r["settings"]) == set(RECIPES)
        assert all(s["normalization"] == r["normalization"] for s in r["settings"].values())
        assert r["settings"]["preserve"]["groups"] == ("row" if r["method"] == "gated-row"
                                                       else "both")
        assert len(r["recipe_per_seed"]) == 1 and r["recipe_per_seed"][0] in RECIPES
        assert "any_sparsity" in r
    assert {"most_accurate", "most_accurate_any_sparsity", "gap_to_published"} <= set(report)
    assert (tmp_path / "planetoid_cora.png").exists()
    assert "gated-row" in out


@pytest.mark.slow
def test_quick_noisy_edges(tmp_path):
    run_example(tmp_path, "--normalizations", "row", "--add-edges", "1.0")
    report = json.loads((tmp_path / "planetoid_cora_add1.json").read_text())
    gcn, gated = report["records"]
    assert gcn["add_edges"] == 1.0 and "added_edges_pruned" not in gcn
    for key in ("added_edges_pruned", "original_edges_pruned"):
        assert 0.0 <= gated[key] <= 1.0
    assert KEYS <= set(gated)
    assert gated["test_acc_mean"] > 40.0
