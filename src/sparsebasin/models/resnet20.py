"""ResNet20xw for CIFAR: 3 stages x 3 BasicBlocks, projection shortcut = 3x3 conv + BN.

Keys: ``conv1``, ``bn1``, ``layer{1,2,3}.{0,1,2}.{conv1,bn1,conv2,bn2}``,
``layer{2,3}.0.shortcut.{0,1}`` (conv, BN) and ``fc``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._spec import PermutationSpec, SpecBuilder

ARCH = {
    "name": "resnet20",
    "label": "ResNet20",
    "input": "image",
    "widths": None,
    "model_args": {},
    "never_prune": ["*.shortcut.*"],
    "fused": True,
    "fused_engine_cpu": "grouped",
    "stream_points": ["stage_output", "authors_code"],
    "cost": {"epoch_minutes": 0.15, "cpu_slowdown": 30.0, "width_exponent": 1.5,
             "width_ref": 2.0, "mem_mb_per_width2": 200, "gflops_per_image": 0.041,
             "act_mb_per_image": 1.5, "params_m": 0.293},
}


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False),
                nn.BatchNorm2d(planes),
            )
        else:
            self.shortcut = nn.Sequential()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet20(nn.Module):
    def __init__(self, num_classes: int = 10, in_channels: int = 3, width: int = 1, **_: object):
        super().__init__()
        w = 16 * width
        self.conv1 = nn.Conv2d(in_channels, w, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(w)
        self.layer1 = self._stage(w, w, stride=1)
        self.layer2 = self._stage(w, 2 * w, stride=2)
        self.layer3 = self._stage(2 * w, 4 * w, stride=2)
        self.fc = nn.Linear(4 * w, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    @staticmethod
    def _stage(in_planes: int, planes: int, stride: int) -> nn.Sequential:
        blocks = [BasicBlock(in_planes, planes, stride)]
        blocks += [BasicBlock(planes, planes, 1) for _ in range(2)]
        return nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.fc(out)


def build(cfg: dict, num_classes: int, in_channels: int, input_size: int | None) -> nn.Module:
    return ResNet20(num_classes=num_classes, in_channels=in_channels, width=cfg["width"])


def permutation_spec(model: ResNet20, stream_points: str = "stage_output") -> PermutationSpec:
    """``res{s}`` per stage for the residual stream, ``layer{s}.{b}`` per block for its inner channels.

    The stream group covers the stem conv1/bn1 (stage 1), every block's
    conv2/bn2 output, the shortcut conv/bn output, the next stage's first conv1
    and shortcut inputs and the classifier input; it is matched at the stage
    output ``layer{s}`` (after add and ReLU; REPAIR's notebook), or with
    ``stream_points="authors_code"`` ``res3`` at the output of ``layer3.1``, as
    the paper's code does (its ``kk=[3, 6, 8]``: after blocks 3, 6 and 8 of 9;
    side by side only 14 of 64 res3 indices agree). Inner groups are matched
    after conv1-bn1-relu.
    """
    b = SpecBuilder("resnet20", model)
    stream = b.group("res1", "layer1", relu=False)
    b.conv("conv1", stream, None)
    b.bn("bn1", stream)
    for s in (1, 2, 3):
        stage = getattr(model, f"layer{s}")
        point = f"layer{s}"
        if s == 3 and stream_points == "authors_code":
            point = f"layer3.{len(stage) - 2}"  # the second-to-last block's output (the authors' block 8 of 9)
        out_stream = stream if s == 1 else b.group(f"res{s}", point, relu=False)
        for i, block in enumerate(stage):
            p = f"layer{s}.{i}"
            inner = b.group(p, f"{p}.bn1", relu=True)
            b.conv(f"{p}.conv1", inner, stream)
            b.bn(f"{p}.bn1", inner)
            b.conv(f"{p}.conv2", out_stream, inner)
            b.bn(f"{p}.bn2", out_stream)
            if len(block.shortcut) > 0:
                b.conv(f"{p}.shortcut.0", out_stream, stream)
                b.bn(f"{p}.shortcut.1", out_stream)
            elif stream != out_stream:
                raise RuntimeError(f"{p} changes the residual stream without a projection shortcut")
            stream = out_stream
    b.linear("fc", None, stream)
    return b.build()
