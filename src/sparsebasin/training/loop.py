"""``fit``: train one model (dense or masked) and write its run directory.

Run directory (docs/architecture.md): ``ckpt/epoch{k}.pt`` for each requested
k (0 = the initialisation before any step, k = epochs completed),
``final.pt``, ``metrics.csv``, ``predictions.pt``, ``result.json`` (written
last, so its presence means the run finished) and the scratch
``.resume.pt`` while the run is in progress. The bookkeeping is
``session.train_runs``'s, shared with fused groups; this module gives it the
single-model engine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping

import torch
from torch import nn

from .config import TrainConfig
from .engines import SingleEngine
from .record import FINAL_OUTPUTS, METRICS_COLUMNS, metrics_csv
from .session import (Member, check_save_epochs, check_training_labels, checkpoint_extra, drop_last_batch,
                      resolve_augment, run_config_record, train_runs)

__all__ = ["fit", "FINAL_OUTPUTS", "METRICS_COLUMNS", "metrics_csv", "check_save_epochs", "check_training_labels",
           "checkpoint_extra", "drop_last_batch", "resolve_augment", "run_config_record"]


def fit(
    model: nn.Module,
    train_ds: Any,
    test_ds: Any,
    cfg: TrainConfig,
    *,
    out_dir: str | Path,
    mask: Mapping[str, torch.Tensor] | None = None,
    data_seed: int = 0,
    save_epochs: Iterable[int] = (),
    model_cfg: dict,
    data_meta: dict,
    run_name: str,
    tags: dict | None = None,
    provenance_config: dict | None = None,
    device: str | torch.device = "auto",
    progress: str = "auto",
    write_predictions: bool = True,
    init_seed: int | None = None,
    force: bool = False,
) -> dict:
    """Train ``model`` for ``cfg.epochs`` epochs, keeping masked weights exactly zero.

    Writes the run directory ``out_dir`` and returns the result dict (also
    ``result.json``). The model is trained in place (moved to ``device``).
    Restarting with the same arguments after a kill resumes from the last
    completed epoch and ends bit-identical on CPU; a finished run asked for
    again is not retrained, and one made with other arguments is replaced
    only with ``force`` (``record.RunRecord``). Raises TrainingDiverged on a
    NaN/inf loss, leaving no final output.
    """
    member = Member(model=model, out_dir=Path(out_dir), run_name=run_name, data_seed=int(data_seed), mask=mask,
                    tags=dict(tags or {}), provenance_config=dict(provenance_config or {}), init_seed=init_seed)

    def make_engine(members, dev, train, augment, drop_last):
        return SingleEngine(members[0], cfg.validate(), dev, train, augment, drop_last)

    return train_runs([member], train_ds, test_ds, cfg, model_cfg=model_cfg, data_meta=data_meta,
                      make_engine=make_engine, engine_name="single", save_epochs=save_epochs, device=device,
                      progress=progress, write_predictions=write_predictions, force=force)[0]
