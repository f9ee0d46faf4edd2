"""``train_run``: a training run from names and paths (what the CLI and the workflow call).

It builds (or loads) the model, loads and validates the mask, loads the data
and hands over to ``fit``. Every file it reads is checked against the
requested model and dataset, so pairing a checkpoint or mask of another
architecture, width or dataset fails with one line naming the file.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .. import checkpoints
from ..errors import UserError
from ..models import model_spec
from .config import TrainConfig
from .loop import fit


def check_matches(obj: dict, what: str, path: str | Path, model_cfg: dict, data_meta: dict) -> None:
    if model_spec(obj["model"]) != model_cfg:
        raise UserError(
            f"{what} {path} is for model {obj['model']}, but the run asks for {model_cfg}; "
            "pass a file of the same model and width (or change --model/--width)"
        )
    if dict(obj["data"]) != dict(data_meta):
        raise UserError(
            f"{what} {path} was made for data {obj['data']}, but the run uses {data_meta}; "
            "pass a file made on the same dataset"
        )


def train_run(
    *,
    model_cfg: dict | None,
    dataset: str,
    data_dir: str | Path,
    cfg: TrainConfig,
    seed: int,
    data_seed: int,
    out_dir: str | Path,
    save_epochs=(),
    init_checkpoint: str | Path | None = None,
    mask_path: str | Path | None = None,
    train_subset: int | None = None,
    device: str | torch.device = "auto",
    tags: dict | None = None,
    run_name: str | None = None,
    progress: str = "auto",
) -> dict:
    """Train one model end to end and write ``out_dir``; returns the result dict.

    The model is built with ``torch.manual_seed(seed)`` or, with
    ``init_checkpoint``, loaded from it (``model_cfg`` may then be None: it
    is taken from the checkpoint). ``data_seed`` drives order and
    augmentation only.
    """
    from ..data import load_split

    cfg = cfg.validate()
    train_ds = load_split(dataset, data_dir, "train", train_subset=train_subset)
    test_ds = load_split(dataset, data_dir, "test")
    meta = checkpoints.data_meta(train_ds.info)

    if init_checkpoint is not None:
        ckpt = checkpoints.load_checkpoint(init_checkpoint)
        if model_cfg is None:
            model_cfg = ckpt["model"]
        model_cfg = model_spec(model_cfg)
        check_matches(ckpt, "checkpoint", init_checkpoint, model_cfg, meta)
        model = checkpoints.model_from_checkpoint(ckpt, str(init_checkpoint))
        init_epoch = int(ckpt["epoch"])
    else:
        if model_cfg is None:
            raise UserError("train_run needs a model config (--model) or an init checkpoint (--init)")
        model_cfg = model_spec(model_cfg)
        torch.manual_seed(int(seed))
        model = checkpoints.build_from_meta(model_cfg, meta)
        init_epoch = None

    mask = None
    if mask_path is not None:
        obj = checkpoints.load_mask(mask_path, model)
        check_matches(obj, "mask", mask_path, model_cfg, meta)
        mask = obj["mask"]

    return fit(
        model, train_ds, test_ds, cfg,
        out_dir=out_dir,
        mask=mask,
        data_seed=int(data_seed),
        save_epochs=save_epochs,
        model_cfg=model_cfg,
        data_meta=meta,
        run_name=run_name or str(out_dir),
        tags=tags,
        provenance_config={
            "dataset": dataset,
            "data_dir": str(data_dir),
            "train_subset": train_subset,
            "init_checkpoint": str(init_checkpoint) if init_checkpoint is not None else None,
            "init_checkpoint_epoch": init_epoch,
            "mask": str(mask_path) if mask_path is not None else None,
        },
        device=device,
        progress=progress,
        init_seed=None if init_checkpoint is not None else int(seed),
    )
