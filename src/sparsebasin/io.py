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
import math
import os
import pickle
import re
import tempfile
import warnings
import zlib
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
    """``obj`` as JSON, always valid JSON: a non-finite float (NaN, inf) becomes null, never a bare ``NaN``.

    Null is not a number, so no reader takes it for one; producers of measured
    values say why beside it (barriers.json's ``nonfinite`` map, result.json's
    ``health``). ``allow_nan=False`` makes any value this conversion misses an
    error here rather than an invalid file.
    """
    text = json.dumps(finite_or_none(obj), indent=2, sort_keys=True, default=_json_default, allow_nan=False)
    write_text(path, text + "\n")


def finite_or_none(obj: Any) -> Any:
    """``obj`` with every non-finite float (numpy and 0-d tensors too) as None; containers rebuilt."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_or_none(v) for v in obj]
    if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):  # tensors, arrays and numpy scalars
        return finite_or_none(obj.tolist())
    return obj


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
        raise UserError(_unreadable(path, what, "UnpicklingError")) from None
    except Exception as exc:  # truncated zip, garbage, empty file
        raise UserError(_unreadable(path, what, type(exc).__name__)) from None


def _unreadable(path, what: str, error: str) -> str:
    """A file torch cannot read: a truncated or corrupt one (delete it and rerun), or another kind of file
    given by mistake (a CSV, a JSON: never to be deleted on our word)."""
    try:
        with open(path, "rb") as f:
            head = f.read(2)
    except (OSError, TypeError):
        head = b""
    if head and head != b"PK" and head[:1] != b"\x80":  # neither torch's zip nor a pickle
        return (f"{path} is not a sparsebasin {what} (not a PyTorch file: it starts with {head!r}); check the path "
                f"you passed")
    return f"{path} is truncated or corrupt ({error}); delete it and rerun the step that produces it"


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
    """Write ``payload`` (a dict of plain types and tensors) tagged with its format, provenance and checksums.

    ``checksums`` holds a CRC-32 of every tensor (dtype, shape and bytes) and
    of every other top-level entry (its plain values, tensors left out), so a
    bit flip on disk is caught at load and named (``verify_checksums``).
    """
    obj = plain({"format": FORMATS[kind], **payload, "provenance": provenance or {}}, kind)
    obj.pop(CHECKSUMS, None)  # a payload copied from a loaded artifact: its own tensors are hashed anew
    obj[CHECKSUMS] = {"algorithm": CHECKSUM_ALGORITHM, "tensors": tensor_checksums(obj),
                      "entries": entry_checksums(obj)}
    torch_save(path, obj)


def artifact_kind(obj: Any) -> str | None:
    """The io kind of a loaded artifact, or None when it carries no known format tag."""
    fmt = obj.get("format") if isinstance(obj, dict) else None
    return next((k for k, v in FORMATS.items() if v == fmt), None)


def load_any_artifact(path: str | os.PathLike, kinds: tuple[str, ...],
                      map_location: str | torch.device = "cpu") -> tuple[str, dict]:
    """Load an artifact that must be one of ``kinds``; returns (kind, artifact).

    Every artifact is checked here, once for every step that reads it: its
    tensors against the checksums written with it (files written before
    checksums existed are read without), a mask's entries against the kept
    counts it records, and every floating tensor for NaN/inf (and BatchNorm
    running variances for negative values), so no step computes on a damaged
    or diverged file. The returned artifact has no ``checksums`` entry.
    """
    what = " or ".join(f"{k} file" for k in kinds)
    path = require_file(path, what)
    obj = safe_torch_load(path, path, what, map_location)
    kind = artifact_kind(obj)
    if kind not in kinds:
        got = obj.get("format") if isinstance(obj, dict) else None
        want = " or ".join(repr(FORMATS[k]) for k in kinds)
        raise UserError(f"{path} is not a {what} (format {got!r}, expected {want}); pass the right file")
    verify_checksums(obj, path)
    if kind == "mask":
        check_kept_counts(obj, path)
    check_finite(kind, obj, path)
    return kind, obj


def load_artifact(path: str | os.PathLike, kind: str, map_location: str | torch.device = "cpu") -> dict:
    """Load an artifact, turning every way it can be wrong into one clear line."""
    return load_any_artifact(path, (kind,), map_location)[1]


# ----------------------------------------------------------- integrity --

CHECKSUMS = "checksums"
CHECKSUM_ALGORITHM = "crc32"  # damage, not tampering: whoever can write a file can recompute any hash
_DAMAGED = "the file is damaged: delete it and rerun the step that made it"


def _tensor_items(obj: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted path, tensor) for every tensor in nested dicts/lists/tuples, in a fixed order; the
    ``checksums`` entry itself is skipped."""
    import torch

    if isinstance(obj, torch.Tensor):
        yield prefix, obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            if not prefix and k == CHECKSUMS:
                continue
            yield from _tensor_items(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _tensor_items(v, f"{prefix}.{i}" if prefix else str(i))


def tensor_checksum(t: torch.Tensor, name: str = "") -> str:
    """CRC-32 of a tensor's name, dtype, shape and bytes (read in place: no copy of a contiguous CPU tensor).

    CRC-32 catches every single-bit flip and burst up to 32 bits, at three times sha256's speed (a
    ResNet50 state dict: 0.05 s against 0.16 s here). The name is included: pickle stores a repeated
    string once, so a flipped key that the payload and the checksum record share would otherwise rename
    both alike.
    """
    import torch

    t = t.detach()
    if t.device.type != "cpu":
        t = t.cpu()
    t = t.contiguous()
    crc = zlib.crc32(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
    if t.numel():
        crc = zlib.crc32(t.reshape(-1).view(torch.uint8).numpy(), crc)
    return f"{crc:08x}"


def tensor_checksums(obj: Any) -> dict[str, str]:
    """{dotted path: checksum} of every tensor in an artifact (a repeated path gets ``#2``, ``#3``...)."""
    keys: list[str] = []
    seen: set[str] = set()
    tensors = []
    for name, t in _tensor_items(obj):
        key, n = name, 1
        while key in seen:
            n += 1
            key = f"{name}#{n}"
        keys.append(key)
        seen.add(key)
        tensors.append(t)
    big = sum(t.numel() * t.element_size() for t in tensors) > _PARALLEL_BYTES
    workers = min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    if big and workers > 1:  # zlib releases the GIL on large buffers: the checksums run side by side
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(workers) as pool:
            sums = list(pool.map(tensor_checksum, tensors, keys))
    else:
        sums = [tensor_checksum(t, k) for t, k in zip(tensors, keys)]
    return dict(zip(keys, sums))


_PARALLEL_BYTES = 16 << 20


def _skeleton(obj: Any) -> Any:
    """``obj`` with its tensors left out (their bytes are hashed one by one): what ``repr`` then hashes."""
    import torch

    if isinstance(obj, torch.Tensor):
        return "<tensor>"
    if isinstance(obj, dict):
        return {k: _skeleton(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        items = [_skeleton(v) for v in obj]
        return items if isinstance(obj, list) else tuple(items)
    return obj


def entry_checksums(obj: dict) -> dict[str, str]:
    """{top-level key: CRC-32 of its plain values} (an epoch, a sparsity report, the provenance ...);
    ``repr`` of plain types (dicts keep their order; floats round-trip) is the same after torch.load."""
    return {str(k): f"{zlib.crc32(f'{k!r}|{_skeleton(v)!r}'.encode()):08x}" for k, v in obj.items() if k != CHECKSUMS}


def verify_checksums(obj: dict, path: str | os.PathLike) -> None:
    """Each tensor against the checksum saved with it, or one line naming the first that differs.

    Files without checksums (written before they existed) are read as they are;
    the entry is removed from ``obj`` either way.
    """
    record = obj.pop(CHECKSUMS, None)
    if record is None:
        damaged = [k for k, v in obj.items() if isinstance(v, dict) and v.get("algorithm") == CHECKSUM_ALGORITHM]
        if damaged:  # the record's own name was hit: not a file from before checksums
            raise UserError(f"{path} fails its checksum (its record is named {damaged[0]!r}); {_DAMAGED}")
        return
    saved = record.get("tensors") if isinstance(record, dict) else None
    entries = record.get("entries") if isinstance(record, dict) else None
    if (not _str_map(saved) or record.get("algorithm") != CHECKSUM_ALGORITHM
            or not (entries is None or _str_map(entries))):
        raise UserError(f"{path} fails its checksum (its record is unreadable); {_DAMAGED}")
    now = tensor_checksums(obj)
    for name in list(saved) + [n for n in now if n not in saved]:
        if saved.get(name) != now.get(name):
            what = ("missing" if name not in now else "not in its checksum record" if name not in saved
                    else "changed")
            raise UserError(f"{path} fails its checksum (tensor {_short(name)} {what}); {_DAMAGED}")
    if entries is not None:
        now = entry_checksums(obj)
        for name in list(entries) + [n for n in now if n not in entries]:
            if entries.get(name) != now.get(name):
                what = "missing" if name not in now else "not in its checksum record" if name not in entries else "changed"
                raise UserError(f"{path} fails its checksum (entry {name!r} {what}); {_DAMAGED}")


def _str_map(d: Any) -> bool:
    return isinstance(d, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in d.items())


def _short(name: str) -> str:
    """A checkpoint's weights are named as in the state dict (without ``state_dict.``)."""
    return name[len("state_dict."):] if name.startswith("state_dict.") else name


def check_kept_counts(obj: dict, path: str | os.PathLike) -> None:
    """A mask's entries keep as many weights as its file records (``kept``, else the sparsity report's
    per-layer ``kept``): one flipped entry is refused, not trained as another density."""
    mask = obj.get("mask")
    if not isinstance(mask, dict):
        return
    recorded = obj.get("kept")
    if not isinstance(recorded, dict):
        layers = (obj.get("sparsity") or {}).get("layers") if isinstance(obj.get("sparsity"), dict) else None
        recorded = {k: v.get("kept") for k, v in layers.items() if isinstance(v, dict)} if isinstance(layers, dict) else {}
    for key, m in mask.items():
        want = recorded.get(key)
        if not isinstance(want, int) or not hasattr(m, "sum"):
            continue
        got = int(m.sum())
        if got != want:
            raise UserError(f"{path}: mask entry {key} keeps {got} weights but the file records {want}; {_DAMAGED}")


def _count_phrase(nan: int, inf: int) -> str:
    parts = [f"{nan} NaN" if nan else "", f"{inf} inf" if inf else ""]
    text = " and ".join(p for p in parts if p)
    return f"{text} value{'s' if nan + inf > 1 else ''}"


_NONFINITE_REMEDY = {
    "checkpoint": "the run that wrote it diverged: rerun it",
    "predictions": "the run that wrote it diverged: rerun it",
    "resume": "the run's scratch state is unusable (a run sets it aside and starts over)",
}


def check_finite(kind: str, obj: dict, path: str | os.PathLike) -> None:
    """Every floating tensor of an artifact is finite, and BatchNorm running variances are >= 0, or
    one line naming the file, the tensor and what is wrong.

    Resume files are checked whole (model and optimizer state): a NaN in a
    momentum buffer would poison the weights a step later.
    """
    import torch

    for name, t in _tensor_items({k: v for k, v in obj.items() if k != "provenance"}):
        if not t.is_floating_point():
            continue
        t = t.detach()
        # One reduction decides for finite tensors (NaN and inf propagate into a sum); a sum that
        # overflows from large finite values falls through to the exact count.
        if not t.numel() or math.isfinite(float(t.sum())) or bool(torch.isfinite(t).all()):
            if name.endswith("running_var") and bool((t < 0).any()):
                neg = int((t < 0).sum())
                raise UserError(f"{path}: tensor {_short(name)} has {neg} negative value{'s' if neg > 1 else ''} "
                                f"(a variance cannot be negative); {_DAMAGED}")
            continue
        nan, inf = int(torch.isnan(t).sum()), int(torch.isinf(t).sum())
        remedy = _NONFINITE_REMEDY.get(kind, "delete it and rerun the step that made it")
        raise UserError(f"{path}: tensor {_short(name)} has {_count_phrase(nan, inf)}; {remedy}")
