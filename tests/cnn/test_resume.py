"""Checkpoints of the CNN training loop: a run interrupted (Ctrl-C or stop())
and resumed ends bit-identical on CPU to an uninterrupted one."""
import importlib.util
import os
import signal
from pathlib import Path

import pytest
import torch

from graphsparse.cnn.train import TrainingInterrupted, fit
from graphsparse.testing import StopAfter
from graphsparse.utils.checkpoint import load_checkpoint

_spec = importlib.util.spec_from_file_location("_tiny", Path(__file__).with_name("_tiny.py"))
_tiny = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_tiny)

HP = dict(dataset="cifar10", epochs=3, batch_size=8, lr=0.1, gate_lr=0.5, momentum=0.9,
          weight_decay=5e-4, warmup_epochs=1, p=0.5, label_smoothing=0.1)


def _data():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (32, 3, 8, 8), dtype=torch.uint8, generator=g)
    return (images, torch.randint(0, 10, (32,), generator=g)), (images[:16], torch.arange(16) % 10)


def _model(init_seed=0):
    torch.manual_seed(init_seed)
    model = _tiny.tiny_resnet(lambdas=0.3)
    model.mask_refresh_steps = 3               # exercise the cached-mask counter too
    with torch.no_grad():
        model.gate.alpha[0, 1] = -30.0         # a skipped block
    return model


def _same(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("stop_at", [5, 8])     # mid-epoch, and the last step of an epoch
def test_resume_is_bit_identical(tmp_path, stop_at):
    train, test = _data()
    ref_model = _model()
    ref = fit(ref_model, train, test, HP, seed=3, checkpoint=tmp_path / "ref.pt")
    ck = tmp_path / "run.pt"
    model = _model()
    with pytest.raises(TrainingInterrupted, match="--resume"):
        fit(model, train, test, HP, seed=3, checkpoint=ck, stop=StopAfter(stop_at))
    state = load_checkpoint(ck)
    assert (state["epoch"], state["step"]) == ((stop_at - 1) // 4, (stop_at - 1) % 4 + 1)
    assert not _same(model, ref_model)
    resumed_model = _model(init_seed=5)        # other weights: only the checkpoint can help
    steps = StopAfter(0)                       # counts the steps run
    res = fit(resumed_model, train, test, HP, seed=3, checkpoint=ck, resume=True, stop=steps)
    assert steps.calls == 3 * 4 - stop_at      # only the steps left were trained
    assert _same(resumed_model, ref_model)
    assert res["history"] == ref["history"] and res["test_acc"] == ref["test_acc"]
    assert load_checkpoint(ck)["epoch"] == HP["epochs"]


def test_periodic_checkpoint_and_resume_from_it(tmp_path):
    train, test = _data()
    ck = tmp_path / "c.pt"
    hp = dict(HP, epochs=2)
    fit(_model(), train, test, hp, seed=1, checkpoint=ck)
    assert load_checkpoint(ck)["epoch"] == 2
    ref_model = _model()
    fit(ref_model, train, test, dict(HP, epochs=3), seed=1)
    # a finished 2-epoch checkpoint is not a 3-epoch run (the schedule differs) ...
    cont = _model()
    fit(cont, train, test, dict(HP, epochs=3), seed=1, checkpoint=ck, resume=True)
    assert not _same(cont, ref_model)
    # ... but resuming without a checkpoint file simply starts from scratch
    fresh = _model()
    fit(fresh, train, test, dict(HP, epochs=3), seed=1, checkpoint=tmp_path / "none.pt",
        resume=True)
    assert _same(fresh, ref_model)


def test_ctrl_c_saves_and_raises(tmp_path):
    train, test = _data()
    ck = tmp_path / "c.pt"
    calls = {"n": 0}

    def send_sigint():
        calls["n"] += 1
        if calls["n"] == 2:
            os.kill(os.getpid(), signal.SIGINT)   # handled: stop after this step
        return False
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(TrainingInterrupted):
        fit(_model(), train, test, HP, seed=0, checkpoint=ck, stop=send_sigint)
    assert signal.getsignal(signal.SIGINT) is before
    assert load_checkpoint(ck)["step"] in (2, 3)


def test_bad_checkpoint_every():
    train, test = _data()
    with pytest.raises(ValueError, match="checkpoint_every"):
        fit(_model(), train, test, HP, checkpoint_every=0)
