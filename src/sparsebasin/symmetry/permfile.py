"""The permutation artifact: save it, and load it only if it is a true permutation for the model.

Payload (docs/architecture.md): ``model`` and ``data`` copied from checkpoint A,
``perm`` ({group: int64 index tensor}), ``meta`` (method, statistic, batches used,
per-group and overall mean matched correlation, ...).
"""

from __future__ import annotations

import os
from typing import Mapping

import torch

from ..errors import UserError
from ..io import load_artifact, save_artifact
from ..models import model_spec
from .apply import check_perm
from .spec import PermutationSpec, spec_from_meta


def save_permutation(
    path: str | os.PathLike,
    perm: Mapping[str, torch.Tensor],
    model_cfg: dict,
    data: dict,
    meta: dict,
    provenance: dict | None = None,
) -> None:
    payload = {
        "model": model_spec(model_cfg),
        "data": dict(data),
        "perm": {g: p.detach().to("cpu", torch.int64).contiguous() for g, p in perm.items()},
        "meta": dict(meta),
    }
    save_artifact(path, "permutation", payload, provenance)


def load_permutation(path: str | os.PathLike, spec: PermutationSpec | None = None) -> tuple[dict, PermutationSpec]:
    """Load and validate a permutation file; returns (artifact with checked ``perm``, spec).

    Without ``spec`` the spec is built from the file's own model description;
    either way every group must be present, of the right length and a true
    permutation, else a UserError naming the file.
    """
    obj = load_artifact(path, "permutation")
    for key in ("model", "data", "perm"):
        if key not in obj:
            raise UserError(f"permutation {path} has no {key!r}; it was not written by sparsebasin, rerun the match step")
    if spec is None:
        _, spec = spec_from_meta(obj["model"], obj["data"])
    obj["perm"] = check_perm(spec, obj["perm"], f"permutation {path}")
    obj.setdefault("meta", {})
    return obj, spec


__all__ = ["save_permutation", "load_permutation"]
