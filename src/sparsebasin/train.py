"""Public training API (implementation in ``sparsebasin.training``).

``TrainConfig``, ``PRESETS``, ``resolve_config``, ``fit``, ``train_run``;
masking helpers live in ``sparsebasin.masking``.
"""

from .masking import apply_mask_, mask_grads_, mask_optimizer_state_
from .training import (METRICS_COLUMNS, PRESETS, CosineSchedule, TrainConfig, check_save_epochs, fit, resolve_config,
                       train_run)

__all__ = ["METRICS_COLUMNS", "PRESETS", "CosineSchedule", "TrainConfig", "check_save_epochs", "fit",
           "resolve_config", "train_run", "apply_mask_", "mask_grads_", "mask_optimizer_state_"]
