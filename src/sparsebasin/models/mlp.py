"""Fully connected ReLU network for MNIST-1D and other flat inputs."""

from __future__ import annotations

import torch
from torch import nn


class MLP(nn.Module):
    """``depth`` hidden layers of ``hidden * width`` units, then a linear head.

    Keys: ``hidden.{i}.weight|bias`` and ``head.weight|bias``.
    """

    def __init__(self, input_size: int, num_classes: int, width: int = 1, depth: int = 2, hidden: int = 128, **_: object):
        super().__init__()
        units = hidden * width
        sizes = [input_size] + [units] * depth
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.head = nn.Linear(sizes[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        for layer in self.hidden:
            x = torch.relu(layer(x))
        return self.head(x)
