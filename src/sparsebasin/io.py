"""Atomic writes and self-describing artifact files.

Every file a step declares as output is written to a temporary sibling and
renamed into place, so an interrupted job never leaves a half-written output
that Snakemake would take for finished. Artifacts (checkpoints, masks,
permutations) are torch files holding a dict with a ``format`` tag, the
payload and the provenance of the run that made them.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

import torch

from .errors import UserError

FORMATS = {
    "checkpoint": "sparsebasin.checkpoint/1",
    "mask": "sparsebasin.mask/1",
    "permutation": "sparsebasin.permutation/1",
    "predictions": "sparsebasin.predictions/1",
    "resume": "sparsebasin.resume/1",
}


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    The temporary file lives in the same directory (same filesystem, so the
    rename is atomic) and is removed if the body raises, e.g. on a full disk.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp creates 0600; results on a shared cluster follow the umask like any file.
    os.chmod(tmp_path, 0o666 & ~_umask())
    try:
        yield tmp_path
        with open(tmp_path, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def ensure_parent_writable(path: str | os.PathLike) -> None:
    """Create ``path``'s directory, or raise one line saying why it cannot be written."""
    parent = Path(path).parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create directory {parent}: {exc.strerror}; choose a writable results directory") from exc
    if not os.access(parent, os.W_OK):
        raise UserError(f"directory {parent} is not writable; fix its permissions or choose another results directory")


def _write_failed(path: Path, exc: OSError) -> UserError:
    return UserError(f"could not write {path}: {exc.strerror or exc}; free space or fix permissions, then rerun (the previous file is intact)")


def write_text(path: str | os.PathLike, text: str) -> None:
    path = Path(path)
    ensure_parent_writable(path)
    try:
        with atomic_path(path) as tmp:
            tmp.write_text(text)
    except OSError as exc:
        raise _write_failed(path, exc) from exc


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item"):
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path} does not exist; run the step that produces it first")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno}); delete it and rerun the step that produces it") from exc


def torch_save(path: str | os.PathLike, obj: Any) -> None:
    path = Path(path)
    ensure_parent_writable(path)
    try:
        # An open file, not a path: torch's zip writer would turn ENOSPC into an opaque "unexpected pos".
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            torch.save(obj, fh)
    except OSError as exc:
        raise _write_failed(path, exc) from exc
    except RuntimeError as exc:  # torch wraps ENOSPC from its zip writer
        raise UserError(f"could not write {path}: {exc}; free space, then rerun (the previous file is intact)") from exc


def save_artifact(path: str | os.PathLike, kind: str, payload: dict, provenance: dict | None = None) -> None:
    """Write ``payload`` (a dict) tagged with its format and provenance."""
    obj = {"format": FORMATS[kind], **payload, "provenance": provenance or {}}
    torch_save(path, obj)


def load_artifact(path: str | os.PathLike, kind: str, map_location: str | torch.device = "cpu") -> dict:
    """Load an artifact, turning every way it can be wrong into one clear line."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path} does not exist; run the step that produces it first")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # truncated zip, pickle garbage, empty file
        raise UserError(f"{path} is truncated or corrupt ({type(exc).__name__}); delete it and rerun the step that produces it") from exc
    want = FORMATS[kind]
    got = obj.get("format") if isinstance(obj, dict) else None
    if got != want:
        raise UserError(f"{path} is not a {kind} file (format {got!r}, expected {want!r}); pass the right file")
    return obj
