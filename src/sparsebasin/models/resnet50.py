"""ResNet50 from torchvision (ImageNet); keys follow torchvision's names."""

from __future__ import annotations

from torch import nn
from torchvision.models import resnet50 as _tv_resnet50


def resnet50(num_classes: int = 1000, in_channels: int = 3, width: int = 1, **_: object) -> nn.Module:
    model = _tv_resnet50(weights=None, num_classes=num_classes)
    if in_channels != 3:
        model.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return model
