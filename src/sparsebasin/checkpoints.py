"""Checkpoints and masks on disk, validated against the model they belong to.

A checkpoint names its architecture (model cfg) and data shape, so any step
can rebuild the model from the file alone; loading a checkpoint or a mask
into the wrong architecture or width fails with one line naming the file.
"""

from __future__ import annotations

import os
from typing import Mapping

import torch
from torch import nn

from .errors import UserError
from .io import load_artifact, save_artifact
from .models import build_model, model_spec, prunable_keys


def data_meta(info) -> dict:
    """The data fields a checkpoint needs to rebuild its model (from a DatasetInfo)."""
    return {
        "name": info.name,
        "num_classes": int(info.num_classes),
        "in_channels": int(info.in_channels),
        "input_size": int(info.input_size),
    }


def build_from_meta(model_cfg: dict, data: dict) -> nn.Module:
    return build_model(model_cfg, data["num_classes"], data["in_channels"], input_size=data["input_size"])


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module | Mapping[str, torch.Tensor],
    model_cfg: dict,
    data: dict,
    epoch: int,
    provenance: dict | None = None,
    **extra,
) -> None:
    sd = model.state_dict() if isinstance(model, nn.Module) else model
    sd = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in sd.items()}
    save_artifact(
        path,
        "checkpoint",
        {"model": model_spec(model_cfg), "data": dict(data), "epoch": int(epoch), "state_dict": sd, **extra},
        provenance,
    )


def load_checkpoint(path: str | os.PathLike) -> dict:
    ckpt = load_artifact(path, "checkpoint")
    for key in ("model", "data", "state_dict", "epoch"):
        if key not in ckpt:
            raise UserError(f"checkpoint {path} has no {key!r}; it was not written by sparsebasin, rerun the step that makes it")
    warn_if_flagged(path)
    return ckpt


def warn_if_flagged(path: str | os.PathLike) -> None:
    """One warning line when a run's final model (``final.pt``, an IMP target's ``model.pt``) comes from a run
    its result.json marks dead or diverged (``sparsebasin.health``): its numbers downstream are real but
    describe a run that did not learn."""
    from pathlib import Path

    from . import health
    from .io import read_json
    from .progress import log

    path = Path(path)
    result = path.with_name("result.json")
    if path.name not in ("final.pt", "model.pt") or not result.is_file():
        return
    try:
        status = health.status_of(read_json(result))
    except UserError:
        return
    if status != health.OK:
        log(f"warning: {path} comes from a run marked {health.LABEL[status]} in {result}")


def check_state_dict(sd: Mapping[str, torch.Tensor], model: nn.Module, source: str) -> None:
    """Same keys and shapes as ``model``, or one line saying what differs."""
    want = model.state_dict()
    missing = [k for k in want if k not in sd]
    extra = [k for k in sd if k not in want]
    if missing or extra:
        what = f"missing {missing[:3]}" if missing else f"unexpected {extra[:3]}"
        raise UserError(f"{source} does not fit the model ({what}); it comes from another architecture")
    for k, v in want.items():
        if tuple(sd[k].shape) != tuple(v.shape):
            raise UserError(
                f"{source} does not fit the model: {k} has shape {tuple(sd[k].shape)}, expected {tuple(v.shape)}"
                " (another width or number of classes?)"
            )


def model_from_checkpoint(ckpt: dict | str | os.PathLike, source: str | None = None) -> nn.Module:
    """Rebuild the architecture recorded in a checkpoint and load its weights."""
    if not isinstance(ckpt, dict):
        source = source or str(ckpt)
        ckpt = load_checkpoint(ckpt)
    source = source or "checkpoint"
    model = build_from_meta(ckpt["model"], ckpt["data"])
    check_state_dict(ckpt["state_dict"], model, source)
    model.load_state_dict(ckpt["state_dict"])
    return model


def same_architecture(a: dict, b: dict, source_a: str, source_b: str) -> None:
    """Two checkpoints/masks must describe the same model cfg and data shape."""
    if model_spec(a["model"]) != model_spec(b["model"]) or a["data"] != b["data"]:
        raise UserError(
            f"{source_a} ({a['model']}, {a['data'].get('name')}) and {source_b} ({b['model']}, {b['data'].get('name')})"
            " describe different models; pair files of the same dataset, model and width"
        )


# ----------------------------------------------------------------- masks --

def mask_density(mask: Mapping[str, torch.Tensor]) -> float:
    total = sum(m.numel() for m in mask.values())
    kept = sum(int(m.sum()) for m in mask.values())
    return kept / total if total else 1.0


def check_mask(mask: Mapping[str, torch.Tensor], model: nn.Module, source: str) -> None:
    """Boolean tensors keyed by parameters of ``model`` with matching shapes."""
    if not isinstance(mask, Mapping) or not mask:
        raise UserError(f"{source} holds no mask entries; rerun the prune step")
    params = dict(model.named_parameters())
    for k, m in mask.items():
        if k not in params:
            raise UserError(f"mask {source} has key {k!r} which is not a parameter of the model; it belongs to another architecture: pass the mask made for this model")
        if not isinstance(m, torch.Tensor) or m.dtype != torch.bool:
            dtype = getattr(m, "dtype", type(m).__name__)
            raise UserError(f"mask {source} entry {k!r} is {dtype}, not a boolean tensor; masks must be bool (rerun the prune step)")
        if tuple(m.shape) != tuple(params[k].shape):
            raise UserError(
                f"mask {source} entry {k!r} has shape {tuple(m.shape)}, expected {tuple(params[k].shape)} (another width?)"
            )


def save_mask(path, mask: Mapping[str, torch.Tensor], model_cfg: dict, data: dict, sparsity: dict | None = None,
              provenance: dict | None = None) -> None:
    bools = {k: v.detach().to("cpu").bool().contiguous() for k, v in mask.items()}
    payload = {
        "model": model_spec(model_cfg),
        "data": dict(data),
        "mask": bools,
        "kept": {k: int(v.sum()) for k, v in bools.items()},  # checked at load (io.check_kept_counts)
        "sparsity": sparsity or {},
    }
    save_artifact(path, "mask", payload, provenance)


def load_mask(path, model: nn.Module | None = None) -> dict:
    """Load a mask artifact; with ``model``, validate keys, dtype and shapes."""
    obj = load_artifact(path, "mask")
    if "mask" not in obj:
        raise UserError(f"{path} has no 'mask' entry; rerun the prune step")
    if model is not None:
        check_mask(obj["mask"], model, str(path))
    return obj


def full_mask(model: nn.Module, keys: list[str] | None = None) -> dict[str, torch.Tensor]:
    """An all-true mask over the prunable (or given) keys."""
    params = dict(model.named_parameters())
    keys = keys if keys is not None else prunable_keys(model)
    return {k: torch.ones_like(params[k], dtype=torch.bool) for k in keys}
