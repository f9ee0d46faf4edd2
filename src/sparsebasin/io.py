"""Atomic writes and self-describing artifact files.

Every file a step declares as output is written to a temporary sibling and
renamed into place, so an interrupted job never leaves a half-written output
that Snakemake would take for finished. Artifacts (checkpoints, masks,
permutations) are torch files holding a dict with a ``format`` tag, the
payload and the provenance of the run that made them.

Loading never runs code: artifacts hold plain types only (dicts, lists,
tuples, numbers, strings, tensors; ``plain`` enforces it when saving) and are
read with ``torch.load(weights_only=True)``, whose unpickler refuses every
other global. On a shared file system anyone who can write into a results
directory could otherwise plant a pickle that runs as the next job's user.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import pickle
import re
import tempfile
import warnings
from io import BytesIO as _BytesIO
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from .errors import UnsafeFile, UserError

if TYPE_CHECKING:  # torch is imported where tensors are read or written: the analysis steps never load it
    import torch

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
    # mkstemp adds 8 random characters; the prefix is cut so the whole name fits (a legal 252-byte name too)
    prefix = fitted_name(f".{path.name}.", path.parent, reserve=len(".tmp") + 8)
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=path.parent)
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


def name_limit(directory: str | os.PathLike) -> int:
    """The longest file name (bytes) ``directory``'s file system allows (255 where it does not say)."""
    d = Path(directory)
    while not d.exists() and d.parent != d:
        d = d.parent
    try:
        return int(os.pathconf(d, "PC_NAME_MAX"))
    except (OSError, ValueError):
        return 255


def fitted_name(name: str, directory: str | os.PathLike, reserve: int = 0) -> str:
    """``name`` if it and ``reserve`` more bytes fit ``directory``'s name limit, else ``name`` cut to fit and
    marked with a hash of the whole (so two long names cut alike stay apart); for temporary and scratch names,
    which a long but legal output name would otherwise push past the limit ("File name too long")."""
    room = name_limit(directory) - reserve
    if len(os.fsencode(name)) <= room:
        return name
    import hashlib

    tag = "~" + hashlib.sha256(os.fsencode(name)).hexdigest()[:10]
    keep = name
    while len(os.fsencode(keep + tag)) > room:
        keep = keep[:-1]
    return keep + tag


def scratch_path(path: str | os.PathLike, suffix: str) -> Path:
    """The hidden sibling ``.<name><suffix>`` of ``path`` (e.g. a resumable step's ``.points.json``), within the
    file system's name limit for any legal ``path``."""
    path = Path(path)
    return path.parent / fitted_name(f".{path.name}{suffix}", path.parent)


def same_path(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name the same file: after resolving symlinks, ``./`` and relative parts, or
    (for existing files) the same inode, which also catches hard links and bind mounts."""
    try:
        if os.path.samefile(a, b):
            return True
    except OSError:
        pass
    return os.path.realpath(a) == os.path.realpath(b)


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
            tmp.write_text(text, encoding="utf-8")  # whatever the locale: every text file is UTF-8
    except OSError as exc:
        raise _write_failed(path, exc) from exc


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist") and getattr(obj, "ndim", 0) > 0:  # tensors and arrays, without importing torch
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def require_file(path: str | os.PathLike, what: str = "file") -> Path:
    """``path`` as a Path if it is an existing regular file, else one line saying what was expected.

    A directory gets its own message: "delete it and rerun" would tell a user
    to delete a finished run directory passed by mistake for a file in it.
    """
    path = Path(path)
    if path.is_dir():
        inside = sorted(p.name for p in path.iterdir() if p.is_file() and not p.name.startswith("."))[:4]
        hint = f" (it holds {', '.join(inside)})" if inside else ""
        raise UserError(f"{path} is a directory, not a {what}; pass the {what} itself{hint}")
    if not path.exists():
        raise UserError(f"{path} does not exist; run the step that produces it first")
    return path


def read_text(path: str | os.PathLike, what: str = "file",
              fix: str = "save it as UTF-8 text (an editor's 'UTF-8' encoding), then rerun") -> str:
    """A text file as UTF-8 whatever the locale; a file in another encoding (UTF-16, Latin-1) is one line."""
    path = require_file(path, what)
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{path} is not UTF-8 text ({not_utf8(data, exc)}); {fix}") from None


def not_utf8(data: bytes, exc: UnicodeDecodeError) -> str:
    """What the bytes of a file that is not UTF-8 look like, for the one line that refuses it."""
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return "it starts with a UTF-16 byte-order mark: saved as UTF-16"
    return f"byte 0x{data[exc.start]:02x} at offset {exc.start} is not UTF-8"


def read_json(path: str | os.PathLike) -> Any:
    path = require_file(path, "JSON file")
    fix = "delete it and rerun the step that produces it"
    text = read_text(path, "JSON file", fix)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno}); {fix}") from exc


def torch_save(path: str | os.PathLike, obj: Any) -> None:
    path = Path(path)
    ensure_parent_writable(path)
    try:
        # An open file, not a path: torch's zip writer would turn ENOSPC into an opaque "unexpected pos".
        import torch

        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            torch.save(obj, fh)
    except OSError as exc:
        raise _write_failed(path, exc) from exc
    except RuntimeError as exc:  # torch wraps ENOSPC from its zip writer
        raise UserError(f"could not write {path}: {exc}; free space, then rerun (the previous file is intact)") from exc


@functools.lru_cache(maxsize=1)
def _plain_leaves() -> tuple:
    import torch

    return (type(None), bool, int, float, str, bytes, torch.Tensor, torch.dtype, torch.Size)


def plain(obj: Any, where: str = "payload") -> Any:
    """``obj`` rebuilt from plain types only, so ``torch.load(weights_only=True)`` reads it back.

    Paths and str subclasses (``torch.__version__``) become str, numpy scalars
    Python numbers, numpy arrays tensors; anything else is a programming error
    here, at save time, rather than an unreadable file later.
    """
    if isinstance(obj, _plain_leaves()):
        if isinstance(obj, str) and type(obj) is not str:
            return str(obj)
        return obj
    if isinstance(obj, dict):
        return {plain(k, where): plain(v, f"{where}.{k}") for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        items = [plain(v, f"{where}[{i}]") for i, v in enumerate(obj)]
        return items if isinstance(obj, list) else tuple(items)
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    import numpy as np

    if isinstance(obj, np.ndarray):
        import torch

        return torch.from_numpy(obj.copy())
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"{where}: {type(obj).__name__} is not a plain type an artifact may hold")


def _safe_globals() -> list:
    # sparsebasin files written before weights_only loading recorded torch.__version__
    # as this str subclass (no behaviour beyond comparisons): keep them readable.
    from torch.torch_version import TorchVersion

    return [TorchVersion]


_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")
# What the weights-only unpickler says when a file asks for more than plain data (not mere garbage bytes).
_REFUSED = re.compile(r"GLOBAL|allowlisted|add_safe_globals|persistent_load|reduce", re.IGNORECASE)


def safe_torch_load(source, path: str | os.PathLike, what: str, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load(source, weights_only=True)``; a file that needs any other global is refused in one line.

    ``source`` is a path or a binary file object; ``path`` names the file in messages.
    """
    import torch

    try:
        with torch.serialization.safe_globals(_safe_globals()), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected pickle protocol")  # foreign pickles: refused below
            return torch.load(source, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        found = _GLOBAL.search(str(exc))
        name = found.group(1) if found else _foreign_global(source)
        if name or _REFUSED.search(str(exc)):
            detail = f"it asks to import {name}" if name else "it holds objects other than tensors and plain values"
            raise UnsafeFile(f"{path} is not a sparsebasin {what} (unsafe content: {detail}; nothing was run); "
                             "if you did not put it there, delete it and rerun the step that produces it") from None
        raise UserError(f"{path} is truncated or corrupt (UnpicklingError); delete it and rerun the step that produces it") from None
    except Exception as exc:  # truncated zip, garbage, empty file
        raise UserError(f"{path} is truncated or corrupt ({type(exc).__name__}); delete it and rerun the step that produces it") from None


def _foreign_global(source) -> str | None:
    """The first global outside torch/collections that a pickle (raw, or a torch zip's data.pkl) names.

    Read with pickletools, which lists opcodes without executing any; None if
    the bytes are not a readable pickle or name no such global.
    """
    import pickletools
    import zipfile

    try:
        if hasattr(source, "seek"):
            source.seek(0)
            data = source.read()
        else:
            data = Path(source).read_bytes()
        if data[:2] == b"PK":
            with zipfile.ZipFile(_BytesIO(data)) as zf:
                member = next((n for n in zf.namelist() if n.endswith("data.pkl")), None)
                data = zf.read(member) if member else b""
        strings: list[str] = []
        for op, arg, _ in pickletools.genops(data):
            if isinstance(arg, str):
                strings.append(arg)
            name = None
            if op.name == "GLOBAL":
                name = str(arg).replace(" ", ".")
            elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                name = f"{strings[-2]}.{strings[-1]}"
            if name and not name.startswith(("torch.", "collections.")):
                return name
    except Exception:  # noqa: BLE001 - unreadable bytes: not a pickle, so "corrupt" it is
        return None
    return None


def save_artifact(path: str | os.PathLike, kind: str, payload: dict, provenance: dict | None = None) -> None:
    """Write ``payload`` (a dict of plain types and tensors) tagged with its format and provenance."""
    obj = plain({"format": FORMATS[kind], **payload, "provenance": provenance or {}}, kind)
    torch_save(path, obj)


def artifact_kind(obj: Any) -> str | None:
    """The io kind of a loaded artifact, or None when it carries no known format tag."""
    fmt = obj.get("format") if isinstance(obj, dict) else None
    return next((k for k, v in FORMATS.items() if v == fmt), None)


def load_any_artifact(path: str | os.PathLike, kinds: tuple[str, ...],
                      map_location: str | torch.device = "cpu") -> tuple[str, dict]:
    """Load an artifact that must be one of ``kinds``; returns (kind, artifact)."""
    what = " or ".join(f"{k} file" for k in kinds)
    path = require_file(path, what)
    obj = safe_torch_load(path, path, what, map_location)
    kind = artifact_kind(obj)
    if kind not in kinds:
        got = obj.get("format") if isinstance(obj, dict) else None
        want = " or ".join(repr(FORMATS[k]) for k in kinds)
        raise UserError(f"{path} is not a {what} (format {got!r}, expected {want}); pass the right file")
    return kind, obj


def load_artifact(path: str | os.PathLike, kind: str, map_location: str | torch.device = "cpu") -> dict:
    """Load an artifact, turning every way it can be wrong into one clear line."""
    return load_any_artifact(path, (kind,), map_location)[1]

