"""The masked trainer: config and presets, schedule, resume state, ``fit`` and ``train_run``.

``sparsebasin.train`` re-exports the public API.
"""

from .config import PRESETS, TrainConfig, resolve_config
from .loop import METRICS_COLUMNS, check_save_epochs, fit
from .run import train_run
from .schedule import CosineSchedule

__all__ = ["PRESETS", "TrainConfig", "resolve_config", "METRICS_COLUMNS", "check_save_epochs", "fit", "train_run",
           "CosineSchedule"]
