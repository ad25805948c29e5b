"""A small CNN of your own, for `model: {arch: file, path: my_nets.py, factory: build}`.

Its forward calls F.relu instead of holding activation modules, as many hand-written networks
do: cnnlab keeps it as written (and says which activations it cannot replace).
"""

import torch
import torch.nn.functional as F
from torch import nn


class SmallNet(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, width: int = 16):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, padding=1)
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.relu(self.conv2(x))
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return self.fc(x)


def build(in_channels: int, num_classes: int, width: int = 16) -> nn.Module:
    """The factory cnnlab calls: (in_channels, num_classes, **model.kwargs) -> nn.Module."""
    return SmallNet(in_channels, num_classes, width)
