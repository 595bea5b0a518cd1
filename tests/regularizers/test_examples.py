"""The SGL0 examples end to end on a few real images from the data root: every
method is reported with the paper's metrics, exact zeros survive masked
fine-tuning, and channel compaction leaves the outputs unchanged."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from graphsparse.testing import require_data

ROOT = Path(__file__).resolve().parents[2]
KEYS = {"test_error", "test_error_before_finalize", "weight_sparsity", "neuron_sparsity",
        "layers", "params", "params_compact", "compaction_max_output_change"}


def run_example(name, tmp_path, *args):
    env = dict(os.environ, OMP_NUM_THREADS="1", MPLBACKEND="Agg")
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / name), "--device", "cpu",
                           "--threads", "1", "--out", str(tmp_path), *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((tmp_path / "results.json").read_text())


@pytest.mark.slow
def test_mnist_sgl0_quick(tmp_path):
    require_data("MNIST/raw")
    report = run_example("mnist_sgl0.py", tmp_path, "--epochs", "1", "--train-limit", "600",
                         "--finetune-epochs", "1", "--methods", "none", "sgl0", "--lam", "5")
    results = report["results"]
    assert list(results) == ["none", "sgl0"]
    for r in results.values():
        assert KEYS <= set(r), KEYS - set(r)
        assert 0.0 <= r["test_error"] < 60.0                    # chance is 90%
        assert r["compaction_max_output_change"] < 1e-4
        assert r["params_compact"] <= r["params"]
    assert results["sgl0"]["weight_sparsity"] > results["none"]["weight_sparsity"]
    assert report["settings"]["linear_groups"] == "in"          # the paper's 1,370 neurons
    assert (tmp_path / "sparsity.png").exists()


@pytest.mark.slow
def test_cifar_sgl0_quick(tmp_path):
    require_data("cifar-10-batches-py")
    report = run_example("cifar_sgl0.py", tmp_path, "--quick", "--methods", "none", "sgl0")
    results = report["results"]
    for r in results.values():
        assert KEYS <= set(r), KEYS - set(r)
        assert r["compaction_max_output_change"] < 1e-3
    assert (tmp_path / "compaction.png").exists()
