"""LeNet-5-Caffe, the MNIST network of the SGL0 paper (Bui et al., 2019) and of
Louizos et al. (2018): ``conv(20, 5x5) - pool - conv(50, 5x5) - pool -
linear(800 -> 500) - linear(500 -> 10)``, often written "20-50-800-500"
after its four groups of neurons (the fully connected layers counted by
their inputs)."""
from __future__ import annotations

from typing import Tuple

from torch import Tensor, nn

from ..utils.validation import check_positive_int


class LeNet5Caffe(nn.Module):
    r"""LeNet-5 as in Caffe's MNIST example, with ReLU after every hidden layer.

    With the defaults it has 431,080 parameters (430,500 weights and 580
    biases), the count the SGL0 paper reports.

    Args:
        in_channels (int, optional): image channels. (default: ``1``)
        num_classes (int, optional): outputs. (default: ``10``)
        widths (tuple of int, optional): channels of the two convolutions and
            width of the hidden linear layer. (default: ``(20, 50, 500)``)
        image_size (int, optional): side of the square input. (default: ``28``)

    Shapes:
        - **input:** ``[N, in_channels, image_size, image_size]``, float
        - **output:** ``[N, num_classes]`` logits
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10,
                 widths: Tuple[int, int, int] = (20, 50, 500), image_size: int = 28):
        super().__init__()
        name = self.__class__.__name__
        self.in_channels = check_positive_int(in_channels, "in_channels", name)
        self.num_classes = check_positive_int(num_classes, "num_classes", name)
        if len(widths) != 3:
            raise ValueError(f"'{name}' expects 'widths' to hold three integers "
                             f"(conv1, conv2, fc1) (got {widths!r})")
        for i, w in enumerate(widths):
            check_positive_int(w, f"widths[{i}]", name)
        self.widths = tuple(widths)
        side = (image_size - 4) // 2
        side = (side - 4) // 2
        if side < 1:
            raise ValueError(f"'{name}' expects 'image_size' >= 16 (got {image_size!r})")
        self.image_size = image_size
        c1, c2, h = self.widths
        self.conv1 = nn.Conv2d(in_channels, c1, 5)
        self.conv2 = nn.Conv2d(c1, c2, 5)
        self.pool = nn.MaxPool2d(2)
        self.act = nn.ReLU()
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(c2 * side * side, h)
        self.fc2 = nn.Linear(h, num_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for m in (self.conv1, self.conv2, self.fc1, self.fc2):
            m.reset_parameters()

    def forward(self, x: Tensor) -> Tensor:
        x = self.pool(self.act(self.conv1(x)))
        x = self.pool(self.act(self.conv2(x)))
        x = self.act(self.fc1(self.flatten(x)))
        return self.fc2(x)
