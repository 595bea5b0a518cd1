"""Tiny configurations of the three CNNs and helpers shared by the CNN tests."""
import torch
from torch import nn

from graphsparse.cnn import DenseNet, ResNet, ResNeXt


def tiny_resnet(gated=True, **kw):
    return ResNet(14, widths=(4, 8, 8), gated=gated, **kw)           # 2 blocks per stage


def tiny_resnext(gated=True, **kw):
    return ResNeXt(20, cardinality=4, width=2, out_channels=(8, 16, 16), stem_channels=8,
                   gated=gated, **kw)                                 # 2 blocks per stage


def tiny_densenet(gated=True, **kw):
    return DenseNet(22, growth_rate=4, gated=gated, **kw)            # 3 layers per block


TINY = {"resnet": tiny_resnet, "resnext": tiny_resnext, "densenet": tiny_densenet}


@torch.no_grad()
def randomize_bn(model: nn.Module) -> None:
    """Non-trivial batch-norm statistics and affine parameters, so that
    eval-mode comparisons exercise them."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.uniform_(0.5, 1.5)
            m.bias.uniform_(-0.5, 0.5)
