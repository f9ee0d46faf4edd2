"""VGG11xw for 32x32 inputs: no BatchNorm, one linear head on the flattened features."""

from __future__ import annotations

import torch
from torch import nn

# conv widths (before the width multiplier) and "M" for 2x2 max-pool:
# pools after convs 1, 2, 4, 6 and 8.
VGG11_CFG = [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]


class VGG11(nn.Module):
    """Keys: ``features.{i}.weight|bias`` (convs at the Sequential indices) and
    ``classifier.weight|bias``."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3, width: int = 1, **_: object):
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for v in VGG11_CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                out = int(v) * width
                layers += [nn.Conv2d(c, out, 3, padding=1), nn.ReLU(inplace=True)]
                c = out
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))
