"""The three example scripts end to end, on random 16x16 images instead of
CIFAR: gated and plain training, compaction, profiling, JSON and PNG."""
import importlib.util
import json
from pathlib import Path

import pytest
import torch

from graphsparse.cnn import experiment

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TINY_FLAGS = {
    "cifar_resnet": ["--depth", "14"],
    "cifar_resnext": ["--depth", "11", "--cardinality", "2", "--width", "2",
                      "--out-channels", "8", "16", "16", "--stem-channels", "8"],
    "cifar_densenet": ["--depth", "10", "--growth-rate", "4"],
}


def _fake_cifar(name, root=None, train=True, device="cpu", download=True):
    g = torch.Generator().manual_seed(int(train))
    n = 32 if train else 20
    return (torch.randint(0, 256, (n, 3, 16, 16), dtype=torch.uint8, generator=g),
            torch.randint(0, 10, (n,), generator=g))


@pytest.mark.parametrize("script", sorted(TINY_FLAGS))
def test_example_runs_end_to_end(script, tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location(script, EXAMPLES / f"{script}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(experiment, "load_cifar", _fake_cifar)
    hp = experiment.parse_args("net", module.HP, module.QUICK,
                               ["--quick", "--epochs", "1", "--batch-size", "16",
                                "--seeds", "0", "1", "--bench-batch", "4", "--bench-repeats",
                                "1", "--lambdas", "0.1", "--device", "cpu",
                                "--out", str(tmp_path)] + TINY_FLAGS[script])
    assert hp["epochs"] == 1 and hp["seeds"] == [0, 1] and hp["lambdas"] == [0.1]
    results = experiment.run_experiment("net", module.build, hp, next(iter(
        module.build(hp, True).structure())))
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["test_acc_gated"]["runs"] == results["test_acc_gated"]["runs"]
    assert len(saved["runs"]["plain"]) == 2
    compaction = saved["runs"]["gated"][0]["compaction"]
    assert compaction["max_abs_diff"] <= 1e-4
    assert compaction["params_after"] <= compaction["params_before"]
    assert (tmp_path / "gates_seed0.png").stat().st_size > 0
