"""A NaN or infinite gate is an error, never a dead block (issue 15, item 6):
the gated forward, the structure reports, fit() and compact() refuse it."""
import importlib.util
from pathlib import Path

import pytest
import torch

from graphsparse.cnn import compact

_spec = importlib.util.spec_from_file_location("_tiny", Path(__file__).with_name("_tiny.py"))
_tiny = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_tiny)

KINDS = ["resnet", "resnext", "densenet"]
REPORT = {"resnet": "learned_depth", "resnext": "learned_cardinality",
          "densenet": "connections_kept"}


def _poison(model, tensor, value):
    with torch.no_grad():
        getattr(model.gate, tensor).view(-1)[1] = value


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("tensor,value", [("alpha", float("nan")), ("beta", float("inf"))])
def test_non_finite_gate_is_refused(kind, tensor, value):
    model = _tiny.TINY[kind]().eval()
    x = torch.randn(2, 3, 8, 8)
    _poison(model, tensor, value)
    match = f"gate.{tensor}"
    with pytest.raises(ValueError, match=match):
        model(x)                                    # evaluation forward reads the gate
    with pytest.raises(ValueError, match=match):
        compact(model)                              # would otherwise delete the "dead" parts
    with pytest.raises(ValueError, match=match):
        getattr(model, REPORT[kind])()
    with pytest.raises(ValueError, match=match):
        model.refresh_gate_state()
    with pytest.raises(ValueError, match=match):
        model.gate_matrix()


def test_training_forward_refuses_nan_at_its_next_read():
    model = _tiny.tiny_resnet().train()
    model.mask_refresh_steps = 2
    x = torch.randn(2, 3, 8, 8)
    model(x)                                        # read: all finite
    _poison(model, "alpha", float("nan"))
    out = model(x)                                  # within the cached window: NaN propagates
    assert torch.isnan(out).all()                   # (never a silently skipped block)
    with pytest.raises(ValueError, match="gate.alpha"):
        model(x)                                    # the next read stops it


def test_a_block_is_never_skipped_for_nan():
    model = _tiny.tiny_resnet().eval()
    with torch.no_grad():
        model.gate.alpha[0, 0] = float("nan")
    # the old code read (a > 0) == False for NaN and skipped the block; now: an error
    with pytest.raises(ValueError, match="not finite|non-finite"):
        model(torch.randn(1, 3, 8, 8))


def test_fit_stops_on_a_nan_gate_at_the_epoch_start():
    from graphsparse.cnn.train import fit
    model = _tiny.tiny_resnet()
    _poison(model, "alpha", float("nan"))
    images = torch.randint(0, 256, (16, 3, 8, 8), dtype=torch.uint8)
    labels = torch.randint(0, 10, (16,))
    hp = dict(dataset="cifar10", epochs=1, batch_size=8, lr=0.1, gate_lr=0.1, momentum=0.9,
              weight_decay=0.0, warmup_epochs=0, p=0.5)
    with pytest.raises(ValueError, match="gate.alpha"):
        fit(model, (images, labels), (images, labels), hp)
