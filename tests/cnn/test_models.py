"""The three gated CNNs against obviously correct references, and the
gradient/finiteness sweep over every configuration."""
import importlib.util
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from graphsparse.cnn import ResNet
from graphsparse.core import pnorm_penalty
from graphsparse.testing import devices

_spec = importlib.util.spec_from_file_location("_tiny", Path(__file__).with_name("_tiny.py"))
_tiny = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_tiny)
TINY, randomize_bn = _tiny.TINY, _tiny.randomize_bn


def _bn(x, bn, sl):
    return F.batch_norm(x, bn.running_mean[sl], bn.running_var[sl], bn.weight[sl], bn.bias[sl],
                        training=False, eps=bn.eps)


def test_resnext_block_equals_loop_over_branches():
    model = TINY["resnext"]().eval()
    randomize_bn(model)
    block = model.blocks[model.blocks_per_stage]        # stride 2, projection shortcut
    x = torch.randn(2, 8, 8, 8)
    a = torch.rand(block.cardinality)
    w = block.width
    total = 0
    for i in range(block.cardinality):                  # one branch at a time
        sl = slice(i * w, (i + 1) * w)
        h = F.relu(_bn(F.conv2d(x, block.conv1.weight[sl]), block.bn1, sl))
        h = F.conv2d(h, block.conv2.weight[sl], stride=block.conv2.stride, padding=1)
        h = F.relu(_bn(h, block.bn2, sl))
        total = total + a[i] * F.conv2d(h, block.conv3.weight[:, sl])
    ref = F.relu(block.shortcut(x) + block.bn3(total))
    torch.testing.assert_close(block(x, a), ref, atol=1e-5, rtol=1e-5)


def test_densenet_layer_equals_explicit_scale_and_concat():
    model = TINY["densenet"]().eval()
    randomize_bn(model)
    layer = model.blocks[0].layers[2]                   # reads x_0, x_1, x_2
    feats = [torch.randn(2, c, 6, 6) for c in layer.in_channels]
    a = torch.rand(len(feats))
    parts, start = [], 0
    for j, x in enumerate(feats):                       # scale each input, then concatenate
        sl = slice(start, start + x.shape[1])
        parts.append(a[j] * F.relu(_bn(x, layer.bn1, sl)))
        start += x.shape[1]
    h = F.conv2d(torch.cat(parts, 1), layer.conv1.weight)
    ref = layer.conv2(F.relu(layer.bn2(h)))
    torch.testing.assert_close(layer(feats, a), ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("rescale", [True, False])
@pytest.mark.parametrize("train", [False, True])
def test_resnet_with_equal_gates_equals_plain(train, rescale):
    gated, plain = TINY["resnet"](rescale=rescale), TINY["resnet"](gated=False)
    randomize_bn(gated)
    plain.load_state_dict(gated.state_dict(), strict=False)
    n = gated.blocks_per_stage
    constant = gated.gate_scale / n                     # equal gates: a = 1 / n everywhere
    with torch.no_grad():
        for stage in plain.stages:
            for block in stage:
                block.bn2.weight.mul_(constant)
                block.bn2.bias.mul_(constant)
    gated.train(train), plain.train(train)
    assert torch.allclose(gated.gate(), torch.full((3, n), 1.0 / n))
    x = torch.randn(3, 3, 16, 16)
    torch.testing.assert_close(gated(x), plain(x), atol=1e-5, rtol=1e-5)


def test_resnet_skips_dead_blocks():
    model = TINY["resnet"]()
    with torch.no_grad():
        model.gate.alpha[0, 1] = -30.0                  # second block of stage 1: zero gate
    model(torch.randn(2, 3, 16, 16)).sum().backward()
    assert model.learned_depth() == [1, 2, 2]
    dead = model.stages[0][1]
    assert all(p.grad is None for p in dead.parameters())
    assert model.stages[0][0].conv1.weight.grad is not None


def test_penalty_is_weighted_per_stage_and_reuses_forward():
    lambdas = [0.5, 0.0, 2.0]
    model = TINY["resnet"](lambdas=lambdas)
    with torch.no_grad():
        model.gate.alpha.normal_()
    a = model.gate()
    expected = sum(lam * pnorm_penalty(a[s]) for s, lam in enumerate(lambdas))
    torch.testing.assert_close(model.penalty(), expected)
    model(torch.randn(2, 3, 16, 16))                    # stashes the gate values
    torch.testing.assert_close(model.penalty(), expected)
    assert model._stash is None
    with pytest.raises(ValueError, match="one per stage"):
        model.set_lambdas([1.0, 2.0])


@pytest.mark.parametrize("name", sorted(TINY))
@pytest.mark.parametrize("gated", [True, False])
@pytest.mark.parametrize("device", devices())
def test_every_parameter_gets_a_gradient(name, gated, device):
    model = TINY[name](gated=gated, lambdas=0.1).to(device)
    with torch.no_grad():
        if gated:                                       # break the symmetry of the gates
            model.gate.alpha.uniform_(-0.3, 0.3)
    x = torch.randn(4, 3, 16, 16, device=device)
    out = model(x)
    assert out.shape == (4, 10) and torch.isfinite(out).all()
    (F.cross_entropy(out, torch.arange(4, device=device)) + model.penalty()).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname
        if not pname.startswith("gate."):
            assert p.grad.abs().sum() > 0, pname
    if gated and name != "densenet":                    # DenseNet has size-1 groups (constant 1)
        assert model.gate.alpha.grad.abs().sum() > 0


@pytest.mark.parametrize("depth", [9, 21])
def test_resnet_rejects_bad_depth(depth):
    with pytest.raises(ValueError, match="6n \\+ 2"):
        ResNet(depth)


@pytest.mark.parametrize("train", [False, True])
def test_densenet_rescaled_at_init_equals_plain(train):
    gated, plain = TINY["densenet"](), TINY["densenet"](gated=False)
    randomize_bn(gated)
    plain.load_state_dict(gated.state_dict(), strict=False)
    gated.train(train), plain.train(train)
    x = torch.randn(3, 3, 16, 16)
    torch.testing.assert_close(gated(x), plain(x), atol=1e-5, rtol=1e-5)
    unscaled = TINY["densenet"](rescale=False)
    unscaled.load_state_dict(gated.state_dict(), strict=False)
    unscaled.train(train)
    assert not torch.allclose(unscaled(x), plain(x), atol=1e-3)   # the head sees a / 4
