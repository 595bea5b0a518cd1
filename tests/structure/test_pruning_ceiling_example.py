"""The static pruning reference (examples/planetoid_pruning_ceiling.py) in a
quick mode on the real Cora files: every rule removes exactly the requested
number of edges, and the full graph trains well above chance."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from graphsparse.testing import require_data

ROOT = Path(__file__).resolve().parents[2]
RULES = ["none", "random", "low_gcn_weight", "low_agreement", "high_agreement",
         "low_feature_cosine"]


@pytest.mark.slow
def test_quick(tmp_path):
    require_data("planetoid/Cora/raw")
    env = dict(os.environ, OMP_NUM_THREADS="1", MPLBACKEND="Agg")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "planetoid_pruning_ceiling.py"),
         "--dataset", "Cora", "--seeds", "1", "--epochs", "30", "--fraction", "0.25",
         "--device", "cpu", "--out", str(tmp_path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "pruning_ceiling_cora.json").read_text())
    rows = report["results"]
    assert [r["rule"] for r in rows] == RULES
    full = rows[0]["edges"]
    assert full == 10556                               # Cora, both directions
    for r in rows[1:]:
        assert r["edges"] == full - int(0.25 * full)
        assert r["delta"] == pytest.approx(r["mean"] - rows[0]["mean"])
    assert rows[0]["mean"] > 50.0                      # chance is about 30%
    assert report["settings"]["epochs"] == 30


def test_bad_fraction(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "planetoid_pruning_ceiling.py"),
         "--fraction", "1.5", "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "--fraction" in proc.stderr
