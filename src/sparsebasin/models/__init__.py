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


# Modules whose ``weight`` a mask covers by default: every Linear (and Bilinear) and every convolution
# (Conv1d/2d/3d and the transposed ones: ``_ConvNd`` is their common base).
MASKABLE = (nn.Linear, nn.Bilinear, nn.modules.conv._ConvNd)


def weight_bearing(model: nn.Module) -> list[tuple[str, str]]:
    """(parameter key, module type) of every weight a layer multiplies its input by: each parameter with two
    or more axes (conv and linear weights, embeddings, a custom layer's kernel), in model order. Biases and
    normalisation scales are vectors and never count."""
    out, seen = [], set()
    for name, module in model.named_modules():
        for pname, p in module.named_parameters(recurse=False):
            if p.dim() >= 2 and id(p) not in seen:  # a tied weight counts once, under its first name
                seen.add(id(p))
                out.append((f"{name}.{pname}" if name else pname, type(module).__name__))
    return out


def _matches(key: str, patterns) -> bool:
    return any(fnmatch.fnmatchcase(key, pat) for pat in patterns)


def prunable_keys(model: nn.Module) -> list[str]:
    """State-dict keys pruned by default, in model order: the ``weight`` of every Linear and convolution
    (``MASKABLE``) and every parameter the card's ``also_prune`` globs name (a custom layer's kernel), less
    those its ``never_prune`` globs name (ResNet shortcut / downsample convs). Biases and BN never.

    Every weight-bearing parameter (``weight_bearing``) must be pruned or named in ``never_prune``:
    otherwise a target sparsity would silently cover part of the model (a plug-in of Conv1d layers "at 75%"
    once pruned 13.6% of its weights), so such a model is refused in one line naming the parameter and
    the card key to set. A module-level ``prunable_keys(model)`` replaces the default choice; the same
    coverage rule applies to it.
    """
    card = arch_of(model)
    own = getattr(registry.module(card), "prunable_keys", None)
    if own is not None:
        keys = list(own(model))
    else:
        keys = []
        for name, module in model.named_modules():
            if isinstance(module, MASKABLE) and isinstance(getattr(module, "weight", None), nn.Parameter):
                keys.append(f"{name}.weight" if name else "weight")
        keys += [k for k, _ in model.named_parameters() if k not in keys and _matches(k, card["also_prune"])]
        order = {k: i for i, (k, _) in enumerate(model.named_parameters())}
        keys = sorted((k for k in keys if not _matches(k, card["never_prune"])), key=order.__getitem__)
    chosen = set(keys)
    for key, kind in weight_bearing(model):
        if key not in chosen and not _matches(key, card["never_prune"]):
            raise UserError(
                f"{card['name']}: parameter {key!r} ({kind}) is neither pruned nor excluded, so a target sparsity "
                f"would not cover it; in the ARCH card of {card['module']} add a glob matching it to 'also_prune' "
                "(to prune it) or to 'never_prune' (to keep it dense)")
    return keys


__all__ = ["MODEL_NAMES", "build_model", "model_spec", "prunable_keys", "arch_of", "PermutationSpec", "SpecBuilder",
           "MLP", "VGG11", "ResNet20", "resnet50"]
