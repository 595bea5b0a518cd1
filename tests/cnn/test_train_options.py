"""Training options of the CNN loop: frozen gate thresholds."""
import importlib.util
from pathlib import Path

import torch

from graphsparse.cnn.train import make_optimizer, train_step

_spec = importlib.util.spec_from_file_location("_tiny", Path(__file__).with_name("_tiny.py"))
_tiny = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_tiny)

HP = dict(lr=0.1, gate_lr=2.0, momentum=0.9, weight_decay=5e-4, warmup_epochs=0, epochs=1,
          p=0.5, amp=False)


def _steps(model, hp, n=5):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(8, 3, 8, 8, generator=g), torch.randint(0, 10, (8,), generator=g)
    opt, _ = make_optimizer(model, hp, n)
    for _ in range(n):
        train_step(model, opt, None, x, y, hp)


def test_freeze_beta_keeps_thresholds_and_every_group_alive():
    torch.manual_seed(0)
    model = _tiny.tiny_resnext(lambdas=5.0)       # a strong penalty
    beta0, alpha0 = model.gate.beta.detach().clone(), model.gate.alpha.detach().clone()
    _steps(model, dict(HP, freeze_beta=True))
    assert torch.equal(model.gate.beta, beta0)
    assert not torch.equal(model.gate.alpha, alpha0)
    assert min(model.learned_cardinality()) >= 1   # n sigmoid(beta) < 1: the max survives
    torch.manual_seed(0)
    free = _tiny.tiny_resnext(lambdas=5.0)
    _steps(free, HP)
    assert not torch.equal(free.gate.beta, beta0)  # without the option beta is trained
