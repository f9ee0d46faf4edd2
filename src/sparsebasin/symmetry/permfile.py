"""The permutation artifact: save it, load it only if it is a true permutation for the model, and apply
it to a mask or checkpoint file (what ``sparsebasin permute`` does).

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


def permute_artifact(permutation: str | os.PathLike, source: str | os.PathLike, obj: dict | None = None,
                     inverse: bool = False) -> tuple[str, dict]:
    """``source`` (a mask or checkpoint, or its loaded artifact ``obj``) permuted by ``permutation``, in memory.

    The input's architecture must be the permutation's; every other field of
    the artifact (epoch, sparsity report, ...) is kept and the provenance
    records the input's own. Returns (kind, permuted artifact). The workflow
    permutes m_A this way inside the job that trains with pi(m_A): a
    permutation costs milliseconds, a job of its own seconds of start-up.
    """
    from .. import provenance
    from ..checkpoints import check_mask, check_state_dict, same_architecture
    from ..io import artifact_kind, load_any_artifact
    from .apply import permute_state

    pobj, _ = load_permutation(permutation)
    if obj is None:
        kind, obj = load_any_artifact(source, ("mask", "checkpoint"))
    else:
        kind = artifact_kind(obj)
    for key in ("model", "data", "mask" if kind == "mask" else "state_dict"):
        if key not in obj:
            raise UserError(f"{kind} {source} has no {key!r}; it was not written by sparsebasin")
    same_architecture(pobj, obj, permutation, source)
    model, spec = spec_from_meta(obj["model"], obj["data"])
    payload = {k: v for k, v in obj.items() if k not in ("format", "provenance")}
    field = "mask" if kind == "mask" else "state_dict"
    (check_mask if kind == "mask" else check_state_dict)(obj[field], model, source)
    payload[field] = permute_state(spec, pobj["perm"], obj[field], inverse=inverse, source=f"{kind} {source}")
    payload["provenance"] = provenance.collect(config={
        "step": "permute", "permutation": str(permutation), "input": str(source), "inverse": bool(inverse),
        "input_provenance": obj.get("provenance", {}), "permutation_meta": pobj.get("meta", {}),
    })
    return kind, payload


def permute_file(permutation: str | os.PathLike, source: str | os.PathLike, out: str | os.PathLike,
                 inverse: bool = False) -> str:
    """Write ``source`` permuted by ``permutation`` (or its inverse) to ``out``; returns the artifact kind."""
    kind, payload = permute_artifact(permutation, source, inverse=inverse)
    prov = payload.pop("provenance")
    save_artifact(out, kind, payload, prov)
    return kind


__all__ = ["save_permutation", "load_permutation", "permute_artifact", "permute_file"]
