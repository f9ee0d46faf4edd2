"""The masked trainer: config and presets, schedule, resume state, the shared run skeleton and its engines.

- ``session.train_runs``: the bookkeeping of one run or a fused group (lock, finished runs, resume,
  checkpoints, metrics, final writes), with ``engines.SingleEngine`` (``fit``) or
  ``fused.StackedEngine`` (``fit_fused``);
- ``runs``: a run's inputs resolved once (``train_run``, ``run_sparse``, ``fused_run``, ``RunSpec``).

Light to import: ``training.config`` (TrainConfig, presets) is torch-free, so the
workflow can resolve presets at parse time; the torch parts load on first use.
"""

from __future__ import annotations

import importlib

from .config import PRESETS, TrainConfig, resolve_config

_LAZY = {
    "METRICS_COLUMNS": "loop", "check_save_epochs": "loop", "fit": "loop",
    "RunSpec": "runs", "fused_run": "runs", "run_sparse": "runs", "train_run": "runs",
    "CosineSchedule": "schedule",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["PRESETS", "TrainConfig", "resolve_config", *_LAZY]
