"""Compaction removes zero-gated blocks, branches and connections and keeps
the eval-mode output; profiling counts what was removed."""
import importlib.util
from pathlib import Path

import pytest
import torch
from torch import nn

from graphsparse.cnn import (BasicBlock, ShortcutOnly, compact, compare_models, count_flops,
                             count_params, time_inference)

_spec = importlib.util.spec_from_file_location("_tiny", Path(__file__).with_name("_tiny.py"))
_tiny = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_tiny)
TINY, randomize_bn = _tiny.TINY, _tiny.randomize_bn

DEAD = -30.0  # an alpha this low is far below the threshold: the gate is exactly zero


def _check_equivalent(model):
    randomize_bn(model)
    model.eval()
    small = compact(model)
    assert small.gate is None and not small.training
    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        assert (model(x) - small(x)).abs().max() <= 1e-4
    assert count_params(small) < count_params(model)
    assert count_flops(small, x) <= count_flops(model, x)
    return small


def test_compact_resnet_blocks_and_transition():
    model = TINY["resnet"]()
    with torch.no_grad():
        model.gate.alpha.uniform_(-0.2, 0.2)
        model.gate.alpha[0, 0] = DEAD          # an ordinary block
        model.gate.alpha[1, 0] = DEAD          # the transition block of stage 2
    small = _check_equivalent(model)
    assert small.learned_depth() == [1, 1, 2]
    assert isinstance(small.stages[1][0], ShortcutOnly)
    assert sum(isinstance(m, BasicBlock) for m in small.modules()) == 4


def test_compact_resnet_whole_stage_but_one_block():
    model = _tiny.ResNet(20, widths=(4, 8, 8))          # 3 blocks per stage
    with torch.no_grad():
        model.gate.alpha[2, :] = DEAD
        model.gate.alpha[2, 1] = 0.0
    assert model.learned_depth() == [3, 3, 1]
    small = _check_equivalent(model)
    assert len(small.stages[2]) == 2                     # transition shortcut + one block


def test_compact_resnext_branches_and_dead_block():
    model = TINY["resnext"]()
    with torch.no_grad():
        model.gate.alpha.uniform_(-0.2, 0.2)
        model.gate.alpha[0, 1:3] = DEAD         # two branches of block 0
        model.gate.alpha[3, 0] = DEAD
        model.gate.beta[2] = 6.0                # block 2: threshold above every branch
    assert model.learned_cardinality() == [2, 4, 0, 3, 4, 4]
    small = _check_equivalent(model)
    assert small.learned_cardinality() == [2, 4, 0, 3, 4, 4]
    assert small.blocks[0].conv2.groups == 2
    assert isinstance(small.blocks[2], ShortcutOnly)


def test_compact_densenet_connections_and_unused_layer():
    model = TINY["densenet"]()                  # 3 layers per block; consumers read 1..4 inputs
    sizes = model.group_sizes
    starts = [sum(sizes[:g]) for g in range(len(sizes))]
    with torch.no_grad():
        model.gate.alpha.uniform_(-0.2, 0.2)
        model.gate.alpha[starts[2] + 0] = DEAD  # block 0, layer 3 drops x_0
        # layer 2 of block 1 (group 5) is read by nobody: layer 3 and the
        # transition drop their connection from x_2
        model.gate.alpha[starts[6] + 2] = DEAD
        model.gate.alpha[starts[7] + 2] = DEAD
    kept = model.connections_kept()
    assert kept[0] == [1, 2, 2, 4] and kept[1] == [1, 2, 2, 3]
    small = _check_equivalent(model)
    assert len(small.blocks[1].layers) == 2
    assert small.blocks[1].out.inputs == [0, 1, 2]


def test_compact_ungated_is_a_copy():
    model = TINY["resnet"](gated=False)
    small = compact(model)
    assert small is not model and count_params(small) == count_params(model)
    with pytest.raises(ValueError, match="supports ResNet"):
        compact(nn.Linear(2, 2))


def test_profile_helpers():
    conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
    x = torch.randn(2, 3, 10, 10)
    assert count_flops(conv, x) == 2 * 2 * 8 * 3 * 9 * 10 * 10
    assert count_params(conv) == 8 * 3 * 9
    t = time_inference({"a": conv, "b": nn.Identity()}, x, repeats=3, warmup=1)
    assert set(t) == {"a", "b"} and all(v > 0 for v in t.values())
    report = compare_models(conv, conv, x, repeats=2)
    assert report["params_ratio"] == 1.0 and report["flops_ratio"] == 1.0
