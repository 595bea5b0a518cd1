"""Gating users' own torchvision models: at initialization the gated model is
the plain one; gate-then-compact equals the gated model with blocks, branches
and connections forced to zero, and returns a plain torchvision model."""
import copy
import importlib
import importlib.util
from pathlib import Path

import pytest
import torch
from torch import nn

from graphsparse.cnn import ShortcutOnly, compact, count_params
from graphsparse.cnn.torchvision import (GatedTorchvisionDenseNet, GatedTorchvisionResNet,
                                         SparseDenseBlock, compact_torchvision,
                                         gate_torchvision)


def _torchvision():
    try:
        return importlib.import_module("torchvision")
    except (ImportError, RuntimeError) as e:   # RuntimeError: built for another torch
        pytest.skip(f"torchvision is not importable beside torch {torch.__version__}: {e}",
                    allow_module_level=True)


tv = _torchvision()
DEAD = -30.0        # an alpha this low is far below the threshold: the gate is exactly zero
MODELS = ["resnet18", "resnet50", "resnext50_32x4d", "densenet121"]


def _build(name, seed=0):
    torch.manual_seed(seed)
    return getattr(tv.models, name)(weights=None, num_classes=10)


@torch.no_grad()
def _randomize(model):
    """Non-trivial batch-norm statistics and affine parameters (eval-mode
    comparisons must exercise the folding), small enough to keep deep nets finite."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.uniform_(0.5, 1.0)
            m.bias.uniform_(-0.2, 0.2)


def _close(a, b, tol=1e-4):
    scale = b.abs().max().clamp_min(1.0)
    return ((a - b).abs().max() / scale).item() <= tol


@pytest.fixture(scope="module")
def x():
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("name", MODELS)
def test_gated_equals_plain_at_init(name, x):
    plain = _build(name).double()          # float64: the equality is exact up to rounding
    _randomize(plain)
    gated = gate_torchvision(plain)
    assert gated.model is not plain                              # a copy by default
    assert gated.gate.alpha.dtype == torch.float64
    for mode in ("eval", "train"):
        getattr(plain, mode)()
        getattr(gated, mode)()
        ref = copy.deepcopy(plain)                               # train mode updates BN stats
        with torch.no_grad():
            assert _close(gated(x.double()), ref(x.double()), 1e-10), mode
    gated = gate_torchvision(plain.float()).eval()
    with torch.no_grad():
        assert _close(gated(x), plain.eval()(x), 1e-5)
    assert gated.structure()                                     # all alive at init
    # the gate is trainable through loss + penalty, with finite gradients
    gated.train()
    loss = gated(x).log_softmax(1)[:, 0].mean() + 0.1 * gated.penalty()
    loss.backward()
    assert gated.gate.alpha.grad is not None and torch.isfinite(gated.gate.alpha.grad).all()
    assert gated.gate.alpha.grad.abs().sum() > 0


def test_inplace_shares_the_users_modules():
    plain = _build("resnet18")
    gated = gate_torchvision(plain, inplace=True)
    assert gated.model is plain
    assert isinstance(gated, GatedTorchvisionResNet)
    # resnet18: four depth groups of two blocks; no grouped convolution to gate
    assert gated.group_sizes == [2, 2, 2, 2]
    rx = gate_torchvision(_build("resnext50_32x4d"))
    assert rx.group_sizes[:1 + 3] == [3, 32, 32, 32]              # layer1: depth, 3 blocks' branches
    assert len(rx.group_sizes) == 4 + 3 + 4 + 6 + 3
    assert gate_torchvision(_build("resnext50_32x4d"), depth=False).group_sizes == [32] * 16


def _kill(gated, positions, groups=()):
    """Random live gates, with the flat components ``positions`` and every
    component of ``groups`` (threshold above the group's total) forced to zero."""
    with torch.no_grad():
        gated.gate.alpha.uniform_(-0.3, 0.3, generator=torch.Generator().manual_seed(3))
        gated.gate.alpha[positions] = DEAD
        gated.gate.beta[list(groups)] = 30.0


def _check_compact(gated, x, tol=1e-4):
    _randomize(gated.model)
    gated.eval()
    with torch.no_grad():
        ref = gated(x)
        small = compact(gated)
        assert not small.training
        out = small(x)
    assert _close(out, ref, tol), (out - ref).abs().max()
    assert count_params(small) < count_params(gated.model)
    return small


def test_compact_resnet18_blocks_and_transition(x):
    gated = gate_torchvision(_build("resnet18"))
    o = gated.offsets
    _kill(gated, [o[0] + 1, o[1] + 0, o[3] + 1])   # layer1[1], layer2[0] (downsample), layer4[1]
    assert gated.learned_depth() == [1, 1, 2, 1]
    small = _check_compact(gated, x)
    assert type(small) is tv.models.ResNet
    assert [len(getattr(small, f"layer{s}")) for s in range(1, 5)] == [1, 2, 2, 1]
    assert isinstance(small.layer2[0], ShortcutOnly)
    assert sum(isinstance(m, tv.models.resnet.BasicBlock) for m in small.modules()) == 5
    # the gated forward skips dead blocks: their weights receive no gradient
    gated.train()
    gated(x).sum().backward()
    assert gated.model.layer1[1].conv1.weight.grad is None
    assert gated.model.layer1[0].conv1.weight.grad is not None


def test_compact_resnet50_whole_stage(x):
    gated = gate_torchvision(_build("resnet50"))
    _kill(gated, [], groups=[2])                   # every block of layer3 (6, first projects)
    assert gated.learned_depth() == [3, 4, 0, 3]
    small = _check_compact(gated, x)
    assert len(small.layer3) == 1 and isinstance(small.layer3[0], ShortcutOnly)


def test_compact_resnext_branches_blocks_and_empty_block(x):
    gated = gate_torchvision(_build("resnext50_32x4d"))
    o = gated.offsets
    # groups: [layer1 depth, 3 x branches, layer2 depth, 4 x branches, ...]
    dead = list(range(o[1], o[1] + 20))             # 20 of 32 branches of layer1[0]
    dead += [o[4] + 2]                              # depth: layer2[2]
    dead += list(range(o[6], o[6] + 31))            # 31 branches of layer2[1]
    _kill(gated, dead, groups=[2])                  # every branch of layer1[1]
    card = gated.learned_cardinality()
    assert card[0] == [12, 0, 32] and card[1][1] == 1
    assert gated.learned_depth() == [3, 3, 6, 3]
    small = _check_compact(gated, x)
    assert type(small) is tv.models.ResNet
    assert small.layer1[0].conv2.groups == 12
    assert small.layer1[0].conv2.out_channels == 12 * 4
    assert small.layer1[0].conv3.in_channels == 12 * 4
    assert isinstance(small.layer1[1], ShortcutOnly)          # no branch left: shortcut + bias
    assert small.layer1[1].bias is not None
    assert small.layer2[1].conv2.groups == 1
    assert len(small.layer2) == 3


def test_compact_densenet_connections_and_layers(x):
    gated = gate_torchvision(_build("densenet121"))
    assert isinstance(gated, GatedTorchvisionDenseNet)
    L = [len(c) - 1 for c in gated.block_channels]
    assert L == [6, 12, 24, 16]
    assert gated.group_sizes[:7] == [1, 2, 3, 4, 5, 6, 7]
    o = gated.offsets
    # block 1: nothing reads layer 2 (index 2 in each reader that could read it) and
    # layer 5 reads only the block input; the transition drops the block input
    dead = [o[g] + 2 for g in range(2, 7)]           # readers 2..6 (layers 3..6, transition)
    dead += [o[4] + j for j in range(1, 5)]          # layer 5 (group 4): inputs 1..4 dead
    dead += [o[6] + 0]                                # transition: block input dead
    _kill(gated, dead, groups=[7 + 11])               # block 2, layer 12: every input dead
    kept = gated.connections_kept()
    assert kept[0] == [1, 2, 2, 3, 1, 5, 5]
    small = _check_compact(gated, x)
    assert type(small) is tv.models.DenseNet
    b1 = small.features.denseblock1
    assert isinstance(b1, SparseDenseBlock)
    assert "denselayer2" not in b1 and len(b1) == 5   # read by nobody: removed
    assert b1["denselayer5"].inputs == [0]
    assert 0 not in b1.out_inputs
    c = gated.block_channels[0]
    assert small.features.transition1.conv.in_channels == sum(c) - c[0] - c[2]
    assert small.features.denseblock2["denselayer12"].inputs == [0]  # all dead: zero-scaled
    assert kept[1][11] == 0


def test_compact_with_all_alive_is_lossless(x):
    for name in ("resnet18", "densenet121"):
        gated = gate_torchvision(_build(name))
        _randomize(gated.model)
        gated.eval()
        with torch.no_grad():
            small = compact_torchvision(gated)
            assert _close(small(x), gated(x))
        assert count_params(small) == count_params(gated.model)


def test_rejects_other_models():
    with pytest.raises(ValueError, match="supports torchvision.models.ResNet"):
        gate_torchvision(nn.Sequential(nn.Conv2d(3, 4, 3)))
    with pytest.raises(ValueError, match="nothing to gate"):
        gate_torchvision(_build("resnet18"), depth=False)
    with pytest.raises(ValueError, match="gate_torchvision"):
        compact_torchvision(nn.Linear(2, 2))


def test_nan_gate_is_an_error_not_a_dead_block(x):
    gated = gate_torchvision(_build("resnet18")).eval()
    with torch.no_grad():
        gated.gate.alpha[0] = float("nan")
    with pytest.raises(ValueError, match="gate.alpha"):
        gated(x)
    with pytest.raises(ValueError, match="gate.alpha"):
        compact(gated)
    with pytest.raises(ValueError, match="gate.alpha"):
        gated.learned_depth()


@pytest.mark.parametrize("name", ["resnet18", "resnext50_32x4d", "densenet121"])
def test_no_host_read_per_training_step(name):
    from graphsparse.cnn.train import make_optimizer, train_step
    spec = importlib.util.spec_from_file_location(
        "_sync", Path(__file__).with_name("test_host_sync.py"))
    sync = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sync)
    gated = gate_torchvision(_build(name), lambdas=0.1)
    if name == "resnet18":
        _kill(gated, [gated.offsets[0] + 1])          # a skipped block
    gated.train()
    gated.refresh_gate_state()                        # what fit() does once per epoch
    x, y = torch.randn(2, 3, 32, 32), torch.tensor([1, 2])
    opt, _ = make_optimizer(gated, sync.HP, 2)
    with sync.count_host_reads() as counts:
        for _ in range(2):
            train_step(gated, opt, None, x, y, sync.HP)
    assert sum(counts.values()) == 0, counts
