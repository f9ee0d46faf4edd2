"""Permutation specs of the registry's architectures: each model module describes its own groups.

The spec structure (``PermutationSpec``, built with ``models.SpecBuilder``
from the model itself, so it cannot drift from the key names) and each
architecture's groups live with the architecture
(``sparsebasin/models/<name>.py``: ``permutation_spec``). Groups, their
matching points and the ``stream_points`` option are documented there; the
names are stable, since permutation files are keyed by them.

``stream_points`` moves only where a residual stream's units are read for
matching (``stage_output``, REPAIR's choice, or ``authors_code``: ResNet20's
res3 at layer3.1, as the paper's code), never which tensors a group permutes.
"""

from __future__ import annotations

from typing import Mapping

from torch import nn

from .. import registry
from ..errors import UserError
from ..models import PermutationSpec, arch_of
from ..models._spec import BN_KEYS  # noqa: F401 (re-exported)

STREAM_POINTS = ("stage_output", "authors_code")


def permutation_spec(model: nn.Module, stream_points: str = "stage_output") -> PermutationSpec:
    """The permutation spec of ``model`` (built by ``models.build_model``), from its architecture's module."""
    if stream_points not in STREAM_POINTS:
        raise UserError(f"unknown stream points {stream_points!r}; choose one of {', '.join(STREAM_POINTS)}")
    card = arch_of(model)
    if stream_points not in card["stream_points"]:
        raise UserError(f"--stream-points {stream_points} is not defined for {card['name']} "
                        f"(it knows {', '.join(card['stream_points'])})")
    return registry.module(card).permutation_spec(model, stream_points=stream_points)


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


__all__ = ["PermutationSpec", "STREAM_POINTS", "permutation_spec", "spec_from_meta", "is_bn_free", "describe"]
