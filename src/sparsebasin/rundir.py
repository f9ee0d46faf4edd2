"""Run directories: one writer at a time, and nothing left by a kill mistaken for output.

A step that writes a run directory (train, sparse, prune, fused) holds an
exclusive ``fcntl.flock`` on ``<dir>/.lock`` while it works there. A second
writer exits at once with one line naming the holder (pid and host, written
into the lock file); it never waits and never interleaves its files with the
holder's. The lock is taken only after every input has been checked, so bad
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
from pathlib import Path
from typing import Iterator, Sequence

from .errors import UserError
from .progress import log

LOCK_NAME = ".lock"


class RunDirBusy(UserError):
    """Another process holds the run directory."""


def _holder(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").strip()
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


def _acquire(d: Path) -> int:
    lock = d / LOCK_NAME
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise UserError(f"cannot create the lock file {lock}: {exc.strerror}; fix the directory's permissions") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunDirBusy(f"{d} is being written by another process ({_holder(lock)}); wait for it to finish "
                             "or stop it, then rerun (two writers would mix their files)") from None
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
    try:
        for d in paths:
            created += _make_dir(d)
            held.append((d, _acquire(d)))
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
