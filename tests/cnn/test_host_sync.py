"""No host read of the gate per training step in the gated ResNet: dead blocks
are skipped by a cached mask, with the same results as reading it every step."""
import contextlib
import copy
import importlib.util
from collections import Counter
from pathlib import Path

import pytest
import torch

from graphsparse.cnn.train import make_optimizer, train_step

_spec = importlib.util.spec_from_file_location("_tiny", Path(__file__).with_name("_tiny.py"))
_tiny = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_tiny)

DEAD = -30.0
HP = dict(lr=0.05, gate_lr=0.5, momentum=0.9, weight_decay=5e-4, warmup_epochs=0, epochs=1,
          p=0.5, amp=False)
#: every Python-level way of reading a tensor's value into the host
READS = ("item", "tolist", "__bool__", "__int__", "__float__", "__index__", "cpu", "numpy")


@contextlib.contextmanager
def count_host_reads():
    """Counts calls of the tensor methods that copy a value to the host (a
    device synchronization on a GPU) while the block runs."""
    counts = Counter()
    saved = {name: getattr(torch.Tensor, name) for name in READS}

    def counting(name, original):
        def method(self, *args, **kwargs):
            counts[name] += 1
            return original(self, *args, **kwargs)
        return method
    try:
        for name, original in saved.items():
            setattr(torch.Tensor, name, counting(name, original))
        yield counts
    finally:
        for name, original in saved.items():
            setattr(torch.Tensor, name, original)


def _model(refresh_steps):
    torch.manual_seed(0)
    model = _tiny.tiny_resnet(lambdas=0.1)
    model.mask_refresh_steps = refresh_steps
    with torch.no_grad():
        model.gate.alpha.uniform_(-0.2, 0.2)
        model.gate.alpha[0, 1] = DEAD          # an identity block
        model.gate.alpha[1, 0] = DEAD          # a transition block
    return model


def _batch():
    g = torch.Generator().manual_seed(1)
    return torch.randn(8, 3, 8, 8, generator=g), torch.randint(0, 10, (8,), generator=g)


def _train(model, steps):
    x, y = _batch()
    opt, _ = make_optimizer(model, HP, steps)
    losses = []
    with count_host_reads() as counts:
        for _ in range(steps):
            loss, pen = train_step(model, opt, None, x, y, HP)
            losses.append(loss.detach() + pen.detach())
    return losses, counts


def test_detector_sees_a_read():
    with count_host_reads() as counts:
        torch.ones(2).sum().item()
        bool(torch.ones(()))
    assert counts["item"] == 1 and counts["__bool__"] == 1


def test_no_host_read_in_training_steps_and_same_results():
    cached = _model(refresh_steps=100)
    cached.train()
    cached.refresh_gate_state()                 # what fit() does once per epoch
    every = _model(refresh_steps=0)             # reads the mask on every step (the old way)
    steps = 6
    losses_c, reads_c = _train(cached, steps)
    losses_e, reads_e = _train(every, steps)
    assert sum(reads_c.values()) == 0, reads_c
    assert reads_e["tolist"] == steps           # the detector would see a per-step read
    assert all(torch.equal(a, b) for a, b in zip(losses_c, losses_e))
    for (name, p), q in zip(cached.named_parameters(), every.parameters()):
        assert torch.equal(p, q), name
    assert cached.learned_depth() == every.learned_depth() == [1, 1, 2]
    # the skipped blocks really were skipped: no gradient ever reached them
    assert cached.stages[0][1].conv1.weight.grad is None


def test_a_block_that_dies_between_reads_gives_the_same_output():
    model = _model(refresh_steps=100).train()
    model.refresh_gate_state()
    with torch.no_grad():
        model.gate.alpha[2, 0] = DEAD           # dies after the read: still computed, gate 0
    ref = copy.deepcopy(model)
    ref.mask_refresh_steps = 0                  # reads now, skips it
    x, _ = _batch()
    torch.manual_seed(0)
    out = model(x)
    assert model.alive[2 * 2 + 0]               # the cached mask still says alive
    torch.manual_seed(0)
    assert torch.allclose(out, ref(x), atol=1e-6)
    assert not ref.alive[2 * 2 + 0]
    model.refresh_gate_state()
    assert not model.alive[2 * 2 + 0]


def test_eval_reads_once_per_change():
    model = _model(refresh_steps=100).eval()
    x, _ = _batch()
    with torch.no_grad():
        model(x)
        with count_host_reads() as counts:
            model(x)
            model(x)
    assert sum(counts.values()) == 0            # parameters unchanged: the cache is exact
    with torch.no_grad():
        model.gate.alpha[2, 1] = DEAD
        with count_host_reads() as counts:
            model(x)
    assert counts["tolist"] == 1
    assert not model.alive[2 * 2 + 1]


def test_refresh_every_n_training_forwards():
    model = _model(refresh_steps=3).train()
    losses, counts = _train(model, 7)
    assert counts["tolist"] == 3                # first forward, then after 3 and 6


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_no_sync_on_cuda():
    model = _model(refresh_steps=100).cuda().train()
    model.refresh_gate_state()
    x, y = (t.cuda() for t in _batch())
    opt, _ = make_optimizer(model, HP, 3)
    train_step(model, opt, None, x, y, HP)      # warm-up (lazy initializations)
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            train_step(model, opt, None, x, y, HP)
    finally:
        torch.cuda.set_sync_debug_mode("default")
