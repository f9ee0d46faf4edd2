"""Scratch state that lets a killed run continue bit-identically.

After every epoch the trainer writes ``.resume.pt`` (io kind "resume") in the
run directory: model and optimizer state, schedule position, epochs done,
metrics rows so far (one list per run), RNG states and a fingerprint of
everything that determines the weights (config, model, data, seeds, init
weights, mask). A rerun with the same arguments finds the file, checks the
fingerprint and continues; a file of another run or a corrupt write is
ignored with a log line and the run starts over, and a file that asks to run
code is refused (``io``). The data order needs no saved state: it is a
function of (data_seed, epoch). Bit-identical on CPU; on CUDA only with
``--deterministic`` (device.set_deterministic: cudnn.benchmark picks algorithms per process).
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Any, Mapping

import torch

from .. import io
from ..errors import UnsafeFile, UserError
from ..progress import log

FILENAME = ".resume.pt"


def tensor_digest(tensors: Mapping[str, torch.Tensor]) -> str:
    """sha256 over keys, dtypes, shapes and raw bytes (any dtype, any device)."""
    h = hashlib.sha256()
    for key in sorted(tensors):
        t = tensors[key].detach().to("cpu").contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def dataset_digest(ds: Any) -> dict:
    """Cheap identity of a dataset: name, split, size and a digest of its labels."""
    out = {"n": len(ds), "split": getattr(ds, "split", None)}
    info = getattr(ds, "info", None)
    if info is not None:
        out["name"] = info.name
    if getattr(ds, "decode", "pil") != "pil":  # other decoders round pixels otherwise: another run
        out["decode"] = ds.decode
    y = getattr(ds, "y", None)
    if isinstance(y, torch.Tensor):
        out["labels"] = tensor_digest({"y": y})
    return out


def fingerprint(parts: dict) -> str:
    """sha256 of a JSON-able description of the run."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def rng_state() -> dict:
    """The host RNG states as plain values (tensors, lists), so the file loads with weights_only.

    No training path draws CUDA random numbers (augmentation and ImageNet
    crops use CPU generators), so no CUDA state is kept: restoring one would
    fail when a run resumes with fewer visible GPUs than it was saved with.
    """
    import numpy as np

    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "python": [int(version), list(internal), gauss],
        "numpy": {"name": str(name), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
    }


def set_rng_state(state: dict) -> None:
    """Restore what ``rng_state`` saved (states of other versions' layout are ignored where unknown)."""
    import numpy as np

    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((int(version), tuple(int(x) for x in internal), gauss))
    npst = state.get("numpy")
    if isinstance(npst, dict):
        keys = np.asarray(npst["keys"].numpy() if isinstance(npst["keys"], torch.Tensor) else npst["keys"],
                          dtype=np.uint32)
        np.random.set_state((npst["name"], keys, int(npst["pos"]), int(npst["has_gauss"]), float(npst["cached_gaussian"])))


def save(path: str | Path, *, fingerprint: str, epoch: int, model: dict, optimizer: dict, schedule: dict,
         rows: list[dict], extra: dict | None = None, provenance: dict | None = None) -> None:
    """Write the scratch state atomically (a kill mid-write leaves the previous file)."""
    payload = {
        "fingerprint": fingerprint,
        "epoch": int(epoch),
        "model": {k: v.detach().to("cpu", copy=True) for k, v in model.items()},
        "optimizer": optimizer,
        "schedule": schedule,
        "rows": list(rows),
        "rng": rng_state(),
        "extra": extra or {},
    }
    io.save_artifact(path, "resume", payload, provenance)


def load(path: str | Path, want: str, run_name: str) -> dict | None:
    """The saved state if ``path`` exists and matches ``want``; else None (logged)."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        state = io.load_artifact(path, "resume")
    except UnsafeFile:
        raise  # not a file this program wrote: refuse, never silently overwrite the evidence
    except UserError as exc:
        log(f"{run_name}: ignoring unreadable resume file {path} ({exc}); starting over")
        return None
    if state.get("fingerprint") != want:
        log(f"{run_name}: ignoring resume file {path}: it belongs to a run with other arguments; starting over")
        return None
    return state
