"""CNNs whose structure is learned by the differentiable sparse gate: depth
(ResNet), cardinality (ResNeXt) and connections (DenseNet), their compaction
into ordinary networks, and counting / timing helpers."""
from ._gating import GatedNetwork, ShortcutA, ShortcutOnly
from .compact import compact
from .densenet import DenseBlock, DenseLayer, DenseNet, Head, Transition
from .lenet import LeNet5Caffe
from .profile import benchmark, compare_models, count_flops, count_params, time_inference
from .resnet import BasicBlock, ResNet
from .resnext import ResNeXt, ResNeXtBlock
from .torchvision import compact_torchvision, gate_torchvision
from .train import TrainingInterrupted

__all__ = ["GatedNetwork", "ResNet", "BasicBlock", "ResNeXt", "ResNeXtBlock", "DenseNet",
           "DenseLayer", "DenseBlock", "LeNet5Caffe", "Transition", "Head", "ShortcutA",
           "ShortcutOnly",
           "compact", "count_params", "count_flops", "time_inference", "benchmark",
           "compare_models", "gate_torchvision", "compact_torchvision", "TrainingInterrupted"]
