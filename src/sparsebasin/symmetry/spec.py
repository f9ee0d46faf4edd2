"""Permutation specs: which permutation group acts on each axis of each state-dict key.

A spec is built from the model itself (its module tree and tensor shapes), one
builder per architecture, so it cannot drift from the key names the models
define. Layout is PyTorch's: Conv2d weight (out, in, kh, kw), Linear weight
(out, in), biases and BatchNorm weight/bias/running_mean/running_var carry the
channel group, ``num_batches_tracked`` carries none. The network input and
the class outputs are never permuted (axis group ``None``).

The inverse view, group -> [(key, axis), ...], is derived from ``axes`` and
never written by hand. Each group also names its *matching point*: the module
whose output (optionally after a ReLU) gives the group's unit activations
for activation matching.

Groups (names are stable: permutation files are keyed by them):

- MLP: ``hidden.{i}`` per hidden layer (matched after its ReLU).
- VGG11: ``features.{i}`` per conv (matched after its ReLU).
- ResNet20: ``res{s}`` per stage for the residual stream (stem conv1/bn1 for
  stage 1; every block's conv2/bn2 output, the shortcut conv/bn output, the
  next stage's first conv1 and shortcut inputs, the classifier input),
  matched at the stage output ``layer{s}`` (after add and ReLU; REPAIR's
  notebook); ``layer{s}.{b}`` per block for the inner channels (conv1 out /
  bn1 / conv2 in), matched after conv1-bn1-relu. ``stream_points=
  "authors_code"`` matches ``res3`` at the output of ``layer3.1`` instead, as
  the paper's published code does (its ``kk=[3, 6, 8]``: after blocks 3, 6
  and 8 of 9); side by side on the same A and B only 14 of 64 res3 indices
  agree between the two.
- ResNet50 (torchvision): ``stem`` (conv1/bn1, inputs of layer1.0's conv1 and
  downsample), ``res{s}`` per stage (conv3/bn3 outputs, downsample outputs,
  next inputs, fc input), ``layer{s}.{b}.inner1`` (conv1 out) and
  ``layer{s}.{b}.inner2`` (conv2 out) per bottleneck.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Mapping

from torch import nn

from ..errors import UserError

BN_KEYS = ("weight", "bias", "running_mean", "running_var")
# Where a residual stream group's unit activations are read (ResNet20; see the module docstring).
STREAM_POINTS = ("stage_output", "authors_code")


@dataclass(frozen=True)
class PermutationSpec:
    """Axis groups per state-dict key, group sizes and matching points.

    ``axes[key][d]`` is the group acting on axis ``d`` of ``key`` (or None).
    ``sizes[group]`` is the number of units; ``match_points[group]`` is
    ``(module name, relu)``: hook that module's output, apply ReLU if set.
    Groups are listed from the input to the output.
    """

    arch: str
    axes: dict[str, tuple[str | None, ...]]
    sizes: dict[str, int]
    match_points: dict[str, tuple[str, bool]] = field(default_factory=dict)

    @property
    def groups(self) -> list[str]:
        return list(self.sizes)

    @cached_property
    def group_axes(self) -> dict[str, list[tuple[str, int]]]:
        """Derived inverse view: group -> every (key, axis) it permutes."""
        out: dict[str, list[tuple[str, int]]] = {g: [] for g in self.sizes}
        for key, groups in self.axes.items():
            for axis, g in enumerate(groups):
                if g is not None:
                    out[g].append((key, axis))
        return out


class _Builder:
    """Collects axis groups key by key and checks them against the state dict."""

    def __init__(self, arch: str, model: nn.Module):
        self.arch = arch
        self.sd = model.state_dict()
        self.modules = dict(model.named_modules())
        self.axes: dict[str, tuple[str | None, ...]] = {}
        self.sizes: dict[str, int] = {}
        self.match_points: dict[str, tuple[str, bool]] = {}

    def group(self, name: str, match_module: str, relu: bool) -> str:
        self.sizes.setdefault(name, -1)
        self.match_points[name] = (match_module, relu)
        return name

    def _set(self, key: str, groups: tuple[str | None, ...]) -> None:
        if key not in self.sd:
            raise RuntimeError(f"{self.arch} spec names {key!r} which the model does not have")
        if key in self.axes:
            raise RuntimeError(f"{self.arch} spec assigns {key!r} twice")
        t = self.sd[key]
        if len(groups) != t.dim():
            raise RuntimeError(f"{self.arch} spec gives {key!r} {len(groups)} axes, tensor has {t.dim()}")
        for axis, g in enumerate(groups):
            if g is None:
                continue
            n = int(t.shape[axis])
            if self.sizes.get(g, -1) == -1:
                self.sizes[g] = n
            elif self.sizes[g] != n:
                raise RuntimeError(f"{self.arch} spec: {key} axis {axis} has {n} units but group {g} has {self.sizes[g]}")
        self.axes[key] = groups

    def conv(self, name: str, out_g: str | None, in_g: str | None) -> None:
        """Conv2d (out, in, kh, kw) or Linear (out, in), plus its bias if any."""
        w = self.sd[f"{name}.weight"]
        self._set(f"{name}.weight", (out_g, in_g) + (None,) * (w.dim() - 2))
        if f"{name}.bias" in self.sd:
            self._set(f"{name}.bias", (out_g,))

    linear = conv

    def bn(self, name: str, g: str) -> None:
        for k in BN_KEYS:
            self._set(f"{name}.{k}", (g,))
        if f"{name}.num_batches_tracked" in self.sd:
            self._set(f"{name}.num_batches_tracked", ())

    def build(self) -> PermutationSpec:
        missing = [k for k in self.sd if k not in self.axes]
        if missing:
            raise RuntimeError(f"{self.arch} spec misses keys {missing[:5]}")
        unsized = [g for g, n in self.sizes.items() if n < 1]
        if unsized:
            raise RuntimeError(f"{self.arch} spec: groups {unsized} act on no tensor")
        return PermutationSpec(self.arch, dict(self.axes), dict(self.sizes), dict(self.match_points))


def _mlp(model: nn.Module) -> PermutationSpec:
    b = _Builder("mlp", model)
    prev = None
    for i in range(len(model.hidden)):
        g = b.group(f"hidden.{i}", f"hidden.{i}", relu=True)
        b.linear(f"hidden.{i}", g, prev)
        prev = g
    b.linear("head", None, prev)
    return b.build()


def _vgg(model: nn.Module) -> PermutationSpec:
    b = _Builder("vgg11", model)
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


def _resnet20(model: nn.Module, stream_points: str = "stage_output") -> PermutationSpec:
    b = _Builder("resnet20", model)
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


def _resnet50(model: nn.Module) -> PermutationSpec:
    b = _Builder("resnet50", model)
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


def arch_name(model: nn.Module) -> str:
    from ..models import MLP, VGG11, ResNet20

    if isinstance(model, MLP):
        return "mlp"
    if isinstance(model, VGG11):
        return "vgg11"
    if isinstance(model, ResNet20):
        return "resnet20"
    try:
        from torchvision.models.resnet import Bottleneck, ResNet
    except ImportError:  # pragma: no cover - torchvision is a dependency
        ResNet = Bottleneck = None
    if ResNet is not None and isinstance(model, ResNet) and isinstance(model.layer1[0], Bottleneck):
        return "resnet50"
    raise UserError(f"no permutation spec for model type {type(model).__name__}; supported: mlp, vgg11, resnet20, resnet50")


_BUILDERS = {"mlp": _mlp, "vgg11": _vgg, "resnet20": _resnet20, "resnet50": _resnet50}


def permutation_spec(model: nn.Module, stream_points: str = "stage_output") -> PermutationSpec:
    """The permutation spec of ``model`` (an instance of one of the registry's architectures).

    ``stream_points`` only moves matching points (never which tensors a group
    permutes); ``authors_code`` is defined for ResNet20.
    """
    if stream_points not in STREAM_POINTS:
        raise UserError(f"unknown stream points {stream_points!r}; choose one of {', '.join(STREAM_POINTS)}")
    arch = arch_name(model)
    if stream_points != "stage_output":
        if arch != "resnet20":
            raise UserError(f"--stream-points {stream_points} is defined for resnet20 only (the paper's code); "
                            f"use stage_output for {arch}")
        return _resnet20(model, stream_points)
    return _BUILDERS[arch](model)


def spec_from_meta(model_cfg: Mapping, data: Mapping) -> tuple[nn.Module, PermutationSpec]:
    """Build the model a checkpoint/mask/permutation file describes, and its spec."""
    from ..checkpoints import build_from_meta

    model = build_from_meta(dict(model_cfg), dict(data))
    return model, permutation_spec(model)


def is_bn_free(model: nn.Module) -> bool:
    return not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def describe(spec: PermutationSpec) -> str:
    """One line per group: name, size, number of tensor axes it permutes (for logs)."""
    return "\n".join(f"{g}: {n} units, {len(spec.group_axes[g])} axes" for g, n in spec.sizes.items())


__all__ = ["PermutationSpec", "permutation_spec", "spec_from_meta", "arch_name", "is_bn_free", "describe"]
