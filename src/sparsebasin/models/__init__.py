"""Model registry: build any architecture from a small config dict.

``build_model({"name": "resnet20", "width": 4}, num_classes=10, in_channels=3)``.
The state-dict key names defined here are a contract: permutation specs,
prunability rules and mask files are keyed by them.
"""

from __future__ import annotations

from typing import Callable

from torch import nn

from ..errors import UserError
from .mlp import MLP
from .resnet20 import ResNet20
from .resnet50 import resnet50
from .vgg import VGG11

_REGISTRY: dict[str, Callable[..., nn.Module]] = {
    "mlp": MLP,
    "vgg11": VGG11,
    "resnet20": ResNet20,
    "resnet50": resnet50,
}

MODEL_NAMES = tuple(_REGISTRY)


def model_spec(cfg: dict) -> dict:
    """Normalise a model config: name, width (int >= 1) and architecture extras."""
    if "name" not in cfg:
        raise UserError("model config needs a 'name' (one of: " + ", ".join(MODEL_NAMES) + ")")
    name = str(cfg["name"]).lower()
    if name not in _REGISTRY:
        raise UserError(f"unknown model {cfg['name']!r}; choose one of: {', '.join(MODEL_NAMES)}")
    width = cfg.get("width", 1)
    if not isinstance(width, int) or isinstance(width, bool) or width < 1:
        raise UserError(f"model width must be a positive integer, got {width!r}")
    spec = dict(cfg)
    spec["name"] = name
    spec["width"] = width
    return spec


def build_model(cfg: dict, num_classes: int, in_channels: int, input_size: int | None = None) -> nn.Module:
    """Build a model. ``input_size`` is the flattened input length (MLP only)."""
    spec = model_spec(cfg)
    name = spec.pop("name")
    if name == "mlp":
        if input_size is None:
            raise UserError("the MLP needs the dataset's input size")
        return MLP(input_size=input_size, num_classes=num_classes, **spec)
    if name == "resnet50" and spec.get("width", 1) != 1:
        raise UserError("resnet50 supports width 1 only (torchvision's definition)")
    return _REGISTRY[name](num_classes=num_classes, in_channels=in_channels, **spec)


def prunable_keys(model: nn.Module) -> list[str]:
    """State-dict keys pruned by default: every Conv and Linear weight except
    ResNet shortcut (projection / downsample) convs. Biases and BN never."""
    keys = []
    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            if ".shortcut." in f".{name}." or ".downsample." in f".{name}.":
                continue
            keys.append(f"{name}.weight")
    return keys


__all__ = ["MODEL_NAMES", "build_model", "model_spec", "prunable_keys", "MLP", "VGG11", "ResNet20", "resnet50"]
