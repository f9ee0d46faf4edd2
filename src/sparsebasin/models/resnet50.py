"""ResNet50 from torchvision (ImageNet); keys follow torchvision's names."""

from __future__ import annotations

from torch import nn

from ._spec import PermutationSpec, SpecBuilder

ARCH = {
    "name": "resnet50",
    "label": "ResNet50",
    "input": "image",
    "widths": [1],
    "model_args": {},
    "never_prune": ["*.downsample.*"],
    "fused": False,
    "fused_engine_cpu": "grouped",
    "cost": {"epoch_minutes": 20.0, "cpu_slowdown": 30.0, "width_exponent": 1.5,
             "width_ref": 2.0, "mem_mb_per_width2": 200, "gflops_per_image": 4.1,
             "act_mb_per_image": 82.1, "params_m": 25.6},
}


def resnet50(num_classes: int = 1000, in_channels: int = 3, width: int = 1, **_: object) -> nn.Module:
    from torchvision.models import resnet50 as _tv_resnet50

    model = _tv_resnet50(weights=None, num_classes=num_classes)
    if in_channels != 3:
        model.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return model


def build(cfg: dict, num_classes: int, in_channels: int, input_size: int | None) -> nn.Module:
    return resnet50(num_classes=num_classes, in_channels=in_channels)


def permutation_spec(model: nn.Module, stream_points: str = "stage_output") -> PermutationSpec:
    """``stem`` (conv1/bn1, inputs of layer1.0's conv1 and downsample), ``res{s}`` per stage (conv3/bn3
    outputs, downsample outputs, next inputs, fc input), ``layer{s}.{b}.inner1``/``inner2`` per bottleneck."""
    b = SpecBuilder("resnet50", model)
    stream = b.group("stem", "bn1", relu=True)
    b.conv("conv1", stream, None)
    b.bn("bn1", stream)
    for s in (1, 2, 3, 4):
        stage = getattr(model, f"layer{s}")
        out_stream = b.group(f"res{s}", f"layer{s}", relu=False)
        for i, block in enumerate(stage):
            p = f"layer{s}.{i}"
            in1 = b.group(f"{p}.inner1", f"{p}.bn1", relu=True)
            in2 = b.group(f"{p}.inner2", f"{p}.bn2", relu=True)
            b.conv(f"{p}.conv1", in1, stream)
            b.bn(f"{p}.bn1", in1)
            b.conv(f"{p}.conv2", in2, in1)
            b.bn(f"{p}.bn2", in2)
            b.conv(f"{p}.conv3", out_stream, in2)
            b.bn(f"{p}.bn3", out_stream)
            if block.downsample is not None:
                b.conv(f"{p}.downsample.0", out_stream, stream)
                b.bn(f"{p}.downsample.1", out_stream)
            elif stream != out_stream:
                raise RuntimeError(f"{p} changes the residual stream without a downsample")
            stream = out_stream
    b.linear("fc", None, stream)
    return b.build()
