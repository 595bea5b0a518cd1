"""Checkpoints of the SGL0 training loop: interrupted and resumed, a run ends
bit-identical on CPU to an uninterrupted one (model, optimizer, scheduler,
the regularizer's V and beta, batch order)."""
import pytest
import torch
from torch import nn

from graphsparse.regularizers.experiment import (
    TrainingInterrupted,
    fit_regularized,
    make_regularizer,
)
from graphsparse.testing import StopAfter
from graphsparse.utils.checkpoint import load_checkpoint

EPOCHS = 4


def _data():
    g = torch.Generator().manual_seed(0)
    return torch.randn(48, 1, 8, 8, generator=g), torch.randint(0, 3, (48,), generator=g)


def _setup(method, init_seed=0):
    torch.manual_seed(init_seed)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 36, 3))
    reg = make_regularizer(method, model, lam=0.5, beta=5.0, beta_growth=1.5, grow_every=1,
                           num_samples=48)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.StepLR(opt, 2, 0.5)
    gen = torch.Generator().manual_seed(7)
    x, y = _data()

    def batches():
        perm = torch.randperm(len(x), generator=gen)
        return ((x[i], y[i]) for i in perm.split(16))
    return model, reg, opt, sched, gen, batches


def _run(method, init_seed=0, **kw):
    model, reg, opt, sched, gen, batches = _setup(method, init_seed)
    hist = fit_regularized(model, reg, opt, batches, EPOCHS, scheduler=sched, generator=gen, **kw)
    return model, reg, hist


@pytest.mark.parametrize("method", ["sgl0", "group_lasso", "none"])
def test_resume_is_bit_identical(tmp_path, method):
    ref_model, ref_reg, ref_hist = _run(method)
    ck = tmp_path / "c.pt"
    with pytest.raises(TrainingInterrupted, match="after epoch 2"):
        _run(method, checkpoint=ck, stop=StopAfter(2))
    assert load_checkpoint(ck)["epoch"] == 2
    ran = []
    # a new process, with other initial weights: only the checkpoint can make it equal
    model, reg, hist = _run(method, init_seed=5, checkpoint=ck, resume=True,
                            on_epoch=lambda e, loss: ran.append(e))
    assert ran == [3, 4]                           # only the epochs left were trained
    assert hist == ref_hist and len(hist) == EPOCHS
    for (k, a), b in zip(model.state_dict().items(), ref_model.state_dict().values()):
        assert torch.equal(a, b), k
    if method == "sgl0":
        assert reg.beta == ref_reg.beta and reg.epoch == ref_reg.epoch == EPOCHS
        assert all(torch.equal(a, b) for a, b in zip(reg.V, ref_reg.V))
    # without resume=True the checkpoint is not read: a fresh run from other weights
    _, _, fresh = _run(method, init_seed=5, checkpoint=ck)
    assert fresh != ref_hist


def test_periodic_checkpoints(tmp_path):
    ck = tmp_path / "c.pt"
    _run("sgl0", checkpoint=ck, checkpoint_every=3)
    state = load_checkpoint(ck)
    assert state["epoch"] == EPOCHS and len(state["history"]) == EPOCHS
    with pytest.raises(ValueError, match="checkpoint_every"):
        _run("sgl0", checkpoint_every=0)
