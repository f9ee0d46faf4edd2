"""Run directories: one writer at a time, and nothing left by a kill mistaken for output.

A step that writes a run directory (train, sparse, prune, fused) holds an
exclusive ``fcntl.flock`` on ``<dir>/.lock`` while it works there. A second
writer never interleaves its files with the holder's: it waits for the lock,
saying so at once and every minute (naming the holder: pid and host, written
into the lock file), then finds the run finished and does nothing, or trains
what is left. The wait is bounded (``SPARSEBASIN_LOCK_WAIT`` seconds, default
24 h; 0 refuses at once); past it the step exits with one line. Waiting is
what keeps two workflows on one results tree from failing a job that another
one is running, and with it, from Snakemake deleting the holder's files as the
outputs of a failed job. A dead holder cannot keep anyone waiting: the kernel
releases its flock. The lock is taken only after every input has been checked, so bad
input creates no directory; on release the lock file is removed, and a
directory this process created and left empty is removed too.

Taking the lock sweeps the ``.<name>.<random>.tmp`` files that an atomic write
killed half-way leaves (``io.atomic_path``): only the lock holder can be
writing them, so they are stale. Subdirectories holding their own ``.lock``
are other run directories and are left to their own writers.

flock works on local disks and on NFSv4 / Lustre (Linux emulates it with POSIX
record locks there), which is where cluster jobs write.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import time
from pathlib import Path
from typing import Iterator, Sequence

from .errors import UserError
from .progress import log

LOCK_NAME = ".lock"


class RunDirBusy(UserError):
    """Another process holds the run directory."""


def _holder(path: Path) -> str:
    try:
        text = path.read_text().strip()
    except OSError:
        text = ""
    return text or "a process that has not written its pid yet"


def _make_dir(d: Path) -> list[Path]:
    """Create ``d`` (and parents); returns the directories created, deepest first."""
    created = []
    p = d
    while not p.exists():
        created.append(p)
        if p.parent == p:
            break
        p = p.parent
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create directory {d}: {exc.strerror}; choose a writable results directory") from exc
    if not os.access(d, os.W_OK):
        raise UserError(f"run directory {d} is not writable; fix its permissions or choose another results directory")
    return created


WAIT_ENV = "SPARSEBASIN_LOCK_WAIT"
DEFAULT_WAIT_S = 24 * 3600
NOTE_EVERY_S = 60.0


def wait_limit() -> float:
    """Seconds a writer waits for a held run directory (``SPARSEBASIN_LOCK_WAIT``), or one line why not."""
    text = os.environ.get(WAIT_ENV, "").strip()
    if not text:
        return float(DEFAULT_WAIT_S)
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise UserError(f"{WAIT_ENV}={text!r} must be a number of seconds >= 0 (0: refuse a held run directory "
                        "at once)")
    return value


def _acquire(d: Path, limit: float) -> int:
    lock = d / LOCK_NAME
    start = time.monotonic()
    next_note = 0.0
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise UserError(f"cannot create the lock file {lock}: {exc.strerror}; fix the directory's permissions") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            waited = time.monotonic() - start
            if waited >= limit:
                how = f"waited {waited:.0f} s ({WAIT_ENV}={limit:g}); " if limit > 0 else ""
                raise RunDirBusy(f"{d} is being written by another process ({_holder(lock)}); {how}wait for it to "
                                 "finish or stop it, then rerun (two writers would mix their files)") from None
            if waited >= next_note:
                log(f"{d} is being written by another process ({_holder(lock)}); waiting for it "
                    f"({waited:.0f} s so far, at most {limit:g} s: {WAIT_ENV})")
                next_note = waited + NOTE_EVERY_S
            time.sleep(min(1.0, max(0.0, limit - waited)))
            continue
        # A holder that was releasing may have unlinked the file between our open and flock:
        # then we hold a lock on a name nobody else sees. Retry on the current file.
        try:
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
            return fd
        os.close(fd)


def sweep_stale_temporaries(d: Path) -> int:
    """Remove ``.*.tmp`` files under ``d`` (not inside nested run directories); returns how many."""
    n = 0
    for root, dirs, files in os.walk(d):
        root_p = Path(root)
        if root_p != d and (root_p / LOCK_NAME).exists():
            dirs[:] = []
            continue
        for f in files:
            if f.startswith(".") and f.endswith(".tmp"):
                with contextlib.suppress(FileNotFoundError):
                    (root_p / f).unlink()
                    n += 1
    return n


@contextlib.contextmanager
def locked(dirs: Sequence[str | os.PathLike]) -> Iterator[list[Path]]:
    """Hold the locks of ``dirs`` (created if needed, taken in a fixed order, all or none)."""
    paths = sorted({Path(d) for d in dirs}, key=lambda p: str(p.resolve()))
    held: list[tuple[Path, int]] = []
    created: list[Path] = []
    limit = wait_limit()
    try:
        for d in paths:
            created += _make_dir(d)
            held.append((d, _acquire(d, limit)))
        for d, _ in held:
            n = sweep_stale_temporaries(d)
            if n:
                log(f"{d}: removed {n} temporary file(s) left by an interrupted write")
        yield paths
    finally:
        for d, fd in reversed(held):
            with contextlib.suppress(FileNotFoundError):
                (d / LOCK_NAME).unlink()
            os.close(fd)
        for c in sorted(created, key=lambda p: len(p.parts), reverse=True):  # only what this call made, if empty
            with contextlib.suppress(OSError):
                c.rmdir()
