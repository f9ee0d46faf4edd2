"""Masks per target sparsity: global magnitude pruning, IMP schedules, sparsity reports.

Light to import: the workflow imports ``pruning.schedule`` (``fmt_sparsity``,
``imp_schedule``) at parse time, before and without torch; the names of the
torch modules (``magnitude``, ``report``) load on first use, and the IMP
driver that trains lives in ``pruning.imp``.
"""

from __future__ import annotations

import importlib

from .schedule import (
    Round,
    branch_rounds,
    check_targets,
    fmt_sparsity,
    imp_schedule,
    lineage,
    nominal_sparsity,
    round_mask_path,
    round_path,
    target_dir,
    training_epochs,
)

_LAZY = {
    "global_magnitude_mask": "magnitude", "kept_count": "magnitude", "mask_counts": "magnitude",
    "prune_to": "magnitude", "select_keys": "magnitude", "sparsity_report": "report",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Round", "branch_rounds", "check_targets", "fmt_sparsity", "global_magnitude_mask", "imp_schedule",
    "kept_count", "lineage", "mask_counts", "nominal_sparsity", "prune_to", "round_mask_path", "round_path",
    "select_keys", "sparsity_report", "target_dir", "training_epochs",
]
