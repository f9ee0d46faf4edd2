"""Display names shared by tables, figures and summaries, so they always agree."""

from __future__ import annotations

import math

from .. import registry

from ..branches import ALL_BRANCHES as BRANCHES  # display order: references first, then the sparse branches
from ..branches import SPARSE_BRANCHES  # noqa: F401 (re-exported for the analyses)
from ..branches import TABLE as _BRANCH_TABLE

BRANCH_LABELS = {b.name: b.label for b in _BRANCH_TABLE}  # each branch's record names it

# The matching methods (symmetry.matching.METHODS), as a series label says them; another shows its own name.
METHOD_LABELS = {"activation": "activation matching", "weight": "weight matching"}

MODES = ("plain", "bn_reset", "repair", "repair_block")  # the order of symmetry.lmc.MODES (torch-free here)
MODE_LABELS = {"plain": "plain", "bn_reset": "BN reset", "repair": "REPAIR", "repair_block": "REPAIR (blocks)"}

DATASET_LABELS = {n: c["label"] for n, c in registry.datasets().items()}  # from each module's card
MODEL_LABELS = {n: c["label"] for n, c in registry.architectures().items()}

METRIC_LABELS = {
    "test_acc": "Test accuracy (%)",
    "test_top5": "Top-5 test accuracy (%)",
    "loss": "Loss",
    "error": "Error (%)",
}


def branch(name: str) -> str:
    return BRANCH_LABELS.get(str(name), str(name))


def method(name: str) -> str:
    return METHOD_LABELS.get(str(name), f"{name} matching")


def mode(name: str) -> str:
    return MODE_LABELS.get(str(name), str(name))


def dataset(name: str) -> str:
    return DATASET_LABELS.get(str(name), str(name))


def model(name: str) -> str:
    return MODEL_LABELS.get(str(name), str(name))


def width(value) -> str:
    """Width multiplier as the paper writes it: ``×4``."""
    return f"×{_number(value)}"


def percent(value) -> str:
    """Fraction as a percentage number to 0.1, no sign: 0.9 -> ``90``, 0.488 -> ``48.8``."""
    return _number(round(float(value) * 100, 1))


def sparsity(value) -> str:
    """Sparsity fraction as a percentage: 0.9 -> ``90%``, 0.975 -> ``97.5%``; missing -> ``dense``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "dense"
    return f"{percent(value)}%"


def path_kind(permuted: bool, mode_name: str) -> str:
    """One interpolation setting: ``Permuted · REPAIR``."""
    return f"{'Permuted' if permuted else 'Unpermuted'} · {mode(mode_name)}"


def setting(row: dict) -> str:
    """``CIFAR-10 · ResNet20 ×4`` from whichever of dataset/model/width are present."""
    parts = []
    if row.get("dataset") is not None:
        parts.append(dataset(row["dataset"]))
    label = model(row["model"]) if row.get("model") is not None else ""
    if row.get("width") is not None:
        label = f"{label or 'width'} {width(row['width'])}"
    if label:
        parts.append(label)
    return " · ".join(parts)


def _number(value) -> str:
    f = float(value)
    return str(int(f)) if f.is_integer() else f"{f:g}"
