"""The masked trainer: config and presets, schedule, resume state, the shared run skeleton and its engines.

- ``session.train_runs``: the bookkeeping of one run or a fused group (lock, finished runs, resume,
  checkpoints, metrics, final writes), with ``engines.SingleEngine`` (``fit``) or
  ``fused.StackedEngine`` (``fit_fused``);
- ``runs``: a run's inputs resolved once (``train_run``, ``run_sparse``, ``fused_run``, ``RunSpec``).
"""

from .config import PRESETS, TrainConfig, resolve_config
from .loop import METRICS_COLUMNS, check_save_epochs, fit
from .runs import RunSpec, fused_run, run_sparse, train_run
from .schedule import CosineSchedule

__all__ = ["PRESETS", "TrainConfig", "resolve_config", "METRICS_COLUMNS", "check_save_epochs", "fit", "train_run",
           "run_sparse", "fused_run", "RunSpec", "CosineSchedule"]
