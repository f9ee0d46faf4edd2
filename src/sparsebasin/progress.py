"""Progress reporting without dependencies: a bar on a terminal, log lines otherwise.

On a terminal (stderr is a tty) each epoch shows a one-line bar redrawn at
most a few times a second; under Snakemake/SLURM (stderr is a file) the bar
would fill logs with carriage returns, so only one plain line per epoch is
written (plus a line every ``log_every`` seconds for very long epochs).

Why not tqdm: the bar is 40 lines here, and what matters is the log mode
(one complete line per epoch in a Snakemake or SLURM log, with the step's
loss and learning rate). tqdm would add a dependency for the terminal case
only, and its file output is carriage-return redraws unless tuned off; live
curves belong to the trackers (``sparsebasin.tracking``).
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

MODES = ("auto", "bar", "log")


def log(msg: str, stream: TextIO | None = None) -> None:
    """One plain line on stderr, flushed (Snakemake log files show it at once)."""
    stream = stream or sys.stderr
    stream.write(f"[sparsebasin] {msg}\n")
    stream.flush()


def resolve_mode(mode: str, stream: TextIO | None = None) -> str:
    """``auto`` -> ``bar`` when ``stream`` (stderr) is a terminal, else ``log``."""
    if mode not in MODES:
        from .errors import UserError

        raise UserError(f"unknown progress mode {mode!r}; use one of: {', '.join(MODES)}")
    if mode != "auto":
        return mode
    stream = stream or sys.stderr
    try:
        return "bar" if stream.isatty() else "log"
    except (AttributeError, ValueError):
        return "log"


class EpochProgress:
    """Progress of one epoch of ``total`` steps; ``update(n, **stats)`` after each step."""

    def __init__(self, desc: str, total: int, mode: str = "auto", stream: TextIO | None = None,
                 min_interval: float = 0.2, log_every: float = 300.0, width: int = 24):
        self.stream = stream or sys.stderr
        self.mode = resolve_mode(mode, self.stream)
        self.desc = desc
        self.total = max(int(total), 1)
        self.n = 0
        self.start = time.perf_counter()
        self.min_interval = min_interval
        self.log_every = log_every
        self.width = width
        self._last_draw = 0.0
        self._last_log = self.start
        self._drawn = False

    def update(self, n: int = 1, **stats: float) -> None:
        self.n += n
        now = time.perf_counter()
        if self.mode == "bar":
            if now - self._last_draw >= self.min_interval or self.n >= self.total:
                self._draw(now, stats)
        elif now - self._last_log >= self.log_every:
            self._last_log = now
            log(f"{self.desc}: step {self.n}/{self.total} {self._fmt(stats)}".rstrip(), self.stream)

    def _draw(self, now: float, stats: dict) -> None:
        self._last_draw = now
        frac = min(self.n / self.total, 1.0)
        filled = int(round(frac * self.width))
        bar = "#" * filled + "-" * (self.width - filled)
        elapsed = now - self.start
        eta = elapsed / frac * (1 - frac) if frac > 0 else 0.0
        line = f"\r{self.desc} [{bar}] {self.n}/{self.total} {elapsed:.0f}s<{eta:.0f}s {self._fmt(stats)}"
        self.stream.write(line.rstrip() + "\x1b[K")
        self.stream.flush()
        self._drawn = True

    @staticmethod
    def _fmt(stats: dict) -> str:
        return " ".join(f"{k}={v:.4g}" for k, v in stats.items())

    def close(self, summary: str) -> None:
        """End the bar (if drawn) and write the epoch's one-line summary."""
        if self._drawn:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
        log(summary, self.stream)
