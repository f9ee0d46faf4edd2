"""Model registry: build any architecture from a small config dict.

``build_model({"name": "resnet20", "width": 4}, num_classes=10, in_channels=3)``.
Every architecture is one module of this package (or of ``SPARSEBASIN_PLUGINS``)
with its card ``ARCH``, ``build`` and ``permutation_spec`` (``sparsebasin.registry``).
The state-dict key names a module defines are a contract: permutation specs,
prunability rules and mask files are keyed by them.
"""

from __future__ import annotations

import fnmatch

from torch import nn

from .. import registry
from ..errors import UserError
from ._spec import PermutationSpec, SpecBuilder
from .mlp import MLP
from .resnet20 import ResNet20
from .resnet50 import resnet50
from .vgg import VGG11

MODEL_NAMES = registry.model_names()


def model_spec(cfg: dict) -> dict:
    """Normalise a model config: name, width (a positive integer the architecture allows) and its extras."""
    if "name" not in cfg:
        raise UserError("model config needs a 'name' (one of: " + ", ".join(registry.model_names()) + ")")
    card = registry.architecture(cfg["name"])
    width = cfg.get("width", 1)
    if not isinstance(width, int) or isinstance(width, bool) or width < 1:
        raise UserError(f"model width must be a positive integer, got {width!r}")
    if card["widths"] is not None and width not in card["widths"]:
        raise UserError(f"{card['name']} supports width {', '.join(map(str, card['widths']))} only, got {width}")
    extra = sorted(set(cfg) - {"name", "width"} - set(card["model_args"]))
    if extra:
        allowed = ", ".join(card["model_args"]) or "none"
        raise UserError(f"{card['name']} takes no model argument {extra[0]!r} (its arguments: {allowed})")
    spec = dict(cfg)
    spec["name"] = card["name"]
    spec["width"] = width
    return spec


def build_model(cfg: dict, num_classes: int, in_channels: int, input_size: int | None = None) -> nn.Module:
    """Build a model. ``input_size`` is the flattened input length (flat-input architectures)."""
    spec = model_spec(cfg)
    card = registry.architecture(spec["name"])
    model = registry.module(card).build(spec, num_classes, in_channels, input_size)
    model.sparsebasin_arch = card["name"]  # which card describes this instance (permutation spec, prunability)
    return model


def arch_of(model: nn.Module) -> dict:
    """The card of a model built by ``build_model``."""
    name = getattr(model, "sparsebasin_arch", None)
    if name is None:
        raise UserError(f"{type(model).__name__} was not built by sparsebasin.models.build_model; no card describes it")
    return registry.architecture(name)


def prunable_keys(model: nn.Module) -> list[str]:
    """State-dict keys pruned by default: every Conv and Linear weight except those the card's
    ``never_prune`` patterns name (ResNet shortcut / downsample convs). Biases and BN never."""
    card = arch_of(model)
    own = getattr(registry.module(card), "prunable_keys", None)
    if own is not None:
        return list(own(model))
    keys = []
    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            key = f"{name}.weight"
            if not any(fnmatch.fnmatchcase(key, pat) for pat in card["never_prune"]):
                keys.append(key)
    return keys


__all__ = ["MODEL_NAMES", "build_model", "model_spec", "prunable_keys", "arch_of", "PermutationSpec", "SpecBuilder",
           "MLP", "VGG11", "ResNet20", "resnet50"]
