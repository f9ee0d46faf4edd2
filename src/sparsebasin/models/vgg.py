"""VGG11xw for 32x32 inputs: no BatchNorm, one linear head on the flattened features."""

from __future__ import annotations

import torch
from torch import nn

from ._spec import PermutationSpec, SpecBuilder

ARCH = {
    "name": "vgg11",
    "label": "VGG11",
    "input": "image",
    "widths": None,
    "model_args": {},
    "never_prune": [],
    "fused": True,
    "fused_engine_cpu": "grouped",
    "cost": {"epoch_minutes": 0.15, "cpu_slowdown": 30.0, "width_exponent": 1.5,
             "width_ref": 2.0, "mem_mb_per_width2": 200, "gflops_per_image": 0.153,
             "act_mb_per_image": 0.95, "params_m": 9.23},
}

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


def build(cfg: dict, num_classes: int, in_channels: int, input_size: int | None) -> nn.Module:
    return VGG11(num_classes=num_classes, in_channels=in_channels, width=cfg["width"])


def permutation_spec(model: VGG11, stream_points: str = "stage_output") -> PermutationSpec:
    """``features.{i}`` per conv, matched after its ReLU; the classifier input is the last conv's group."""
    from ..errors import UserError

    b = SpecBuilder("vgg11", model)
    prev = None
    last_channels = None
    for i, m in enumerate(model.features):
        if isinstance(m, nn.Conv2d):
            g = b.group(f"features.{i}", f"features.{i}", relu=True)
            b.conv(f"features.{i}", g, prev)
            prev, last_channels = g, m.out_channels
    if model.classifier.in_features != last_channels:
        raise UserError(
            f"VGG11 classifier takes {model.classifier.in_features} features, not the last conv's {last_channels} channels;"
            " the permutation spec needs 1x1 final feature maps (32x32 inputs)"
        )
    b.linear("classifier", None, prev)
    return b.build()
