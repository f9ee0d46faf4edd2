"""Masks per target sparsity: global magnitude pruning, IMP schedules, sparsity reports.

Light to import (the workflow imports ``fmt_sparsity`` and ``imp_schedule``
at parse time); the IMP driver that trains lives in ``pruning.imp``.
"""

from .magnitude import global_magnitude_mask, kept_count, mask_counts, prune_to, select_keys
from .report import sparsity_report
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

__all__ = [
    "Round", "branch_rounds", "check_targets", "fmt_sparsity", "global_magnitude_mask", "imp_schedule",
    "kept_count", "lineage", "mask_counts", "nominal_sparsity", "prune_to", "round_mask_path", "round_path",
    "select_keys", "sparsity_report", "target_dir", "training_epochs",
]
