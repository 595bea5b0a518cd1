import pytest
import torch
from torch import nn

from graphsparse.cnn.lenet import LeNet5Caffe
from graphsparse.cnn.resnet import ResNet
from graphsparse.regularizers import SGL0, compact_channels


def _zero_rows(layer, rows):
    with torch.no_grad():
        layer.weight[rows] = 0
        if layer.bias is not None:
            layer.bias[rows] = 0


def test_lenet_compaction_keeps_outputs():
    model = LeNet5Caffe().eval()
    _zero_rows(model.conv1, [1, 5])          # dead outputs
    _zero_rows(model.conv2, list(range(3, 10)))
    _zero_rows(model.fc1, list(range(100, 300)))
    with torch.no_grad():
        model.fc1.weight[:, :2 * 16] = 0     # conv2 channels 0, 1 unused after the flatten
        model.conv2.weight[:, 7] = 0         # conv1 channel 7 unused
        model.fc2.weight[:, 400] = 0         # fc1 neuron 400 unused
        # conv2 channel 20 reads only dead inputs: removable on the second pass
        model.conv2.weight[20, [i for i in range(20) if i not in (1, 5)]] = 0
        model.conv2.bias[20] = 0
    x = torch.randn(16, 1, 28, 28)
    y = model(x)
    report = compact_channels(model, x)
    assert report.channels == {"conv1": (20, 17), "conv2": (50, 40), "fc1": (500, 299)}
    assert model.conv2.in_channels == 17 and model.fc1.in_features == 40 * 16
    assert model.fc2.weight.shape == (10, 299)
    torch.testing.assert_close(model(x), y, rtol=1e-5, atol=1e-5)
    assert report.skipped == {}


def test_compaction_after_sgl0_finalize():
    model = LeNet5Caffe(widths=(6, 8, 20))
    reg = SGL0(model, lam=0.1, beta=2.5)  # threshold 0.28: most of V is zero
    with torch.no_grad():
        model.conv1.weight[:3] += 1.0   # a few channels survive the threshold
        model.conv2.weight[:4] += 1.0
        model.fc1.weight[:5] += 1.0
    reg.step()
    reg.finalize()
    x = torch.randn(4, 1, 28, 28)
    y = model(x)
    report = compact_channels(model, x)
    assert report.removed > 0
    torch.testing.assert_close(model(x), y)


def _conv_bn_net():
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.Conv2d(8, 6, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(6, 2))


def test_norm_is_attached_and_compacted():
    model = _conv_bn_net()
    reg = SGL0(model, lam=0.1, beta=2.5, norms=True)
    assert reg.layers[0].norm is model[1] and reg.layers[0].group_size == 27 + 1 + 2
    with torch.no_grad():
        model[1].running_mean.uniform_(-1, 1)
        model[1].weight[[2, 4]] = 0
        model[1].bias[[2, 4]] = 0   # zero after the norm, whatever the conv does
    model.eval()
    x = torch.randn(2, 3, 8, 8)
    y = model(x)
    report = compact_channels(model, x)
    assert report.channels["0"] == (8, 6) and model[1].num_features == 6
    assert model[1].running_mean.shape == (6,) and model[3].in_channels == 6
    torch.testing.assert_close(model(x), y)


def test_resnet_inner_channels_compact_and_residual_channels_are_refused():
    model = ResNet(20, gated=False, widths=(4, 8, 16)).eval()
    block = model.stages[0][0]
    _zero_rows(block.conv1, [0, 2])
    with torch.no_grad():
        block.bn1.weight[[0, 2]] = 0
        block.bn1.bias[[0, 2]] = 0
    x = torch.randn(2, 3, 16, 16)
    y = model(x)
    report = compact_channels(model, x)
    assert report.channels["stages.0.0.conv1"] == (4, 2)
    assert block.conv2.in_channels == 2
    torch.testing.assert_close(model(x), y)
    _zero_rows(model.stages[1][0].conv2, [1])   # feeds the residual addition
    report = compact_channels(model, x)
    assert "stages.1.0.conv2" in report.skipped
    with pytest.raises(ValueError, match="'stages.1.0.conv2'"):
        compact_channels(model, x, strict=True)


def test_untraceable_model_is_refused():
    class Dynamic(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 3)

        def forward(self, x):
            return self.fc(x) if x.sum() > 0 else x

    with pytest.raises(ValueError, match="torch.fx"):
        compact_channels(Dynamic(), torch.randn(1, 3))
