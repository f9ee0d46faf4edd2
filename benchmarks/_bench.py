"""Shared helpers of the benchmarks: alternating timing, machine facts, JSON output.

The benchmark machine is usually shared, so every comparison times its
candidates alternately in the same process (A B B A A B ...) and reports
medians and the median of the per-round ratios; the load average before and
after is recorded with the numbers.
"""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parents[1]


def load_average() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:  # pragma: no cover - not on Linux
        return float("nan")


def machine() -> dict:
    """What the numbers were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    out = {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "torch_threads": torch.get_num_threads(),
        "load_average_1min": load_average(),
    }
    if torch.cuda.is_available():
        out["gpu"] = torch.cuda.get_device_name(0)
    return out


def alternate(candidates: dict[str, Callable[[], object]], rounds: int, *, label: str = "",
              verbose: bool = True) -> dict[str, list[float]]:
    """Time every candidate once per round, alternating the order (ABC, CBA, ABC, ...); seconds per round."""
    names = list(candidates)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        order = names if r % 2 == 0 else names[::-1]
        for n in order:
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            with open(os.devnull, "w") as sink, contextlib.redirect_stderr(sink):  # per-epoch log lines
                candidates[n]()
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            times[n].append(time.perf_counter() - t0)
            if verbose:
                print(f"  {label}round {r + 1}/{rounds} {n}: {times[n][-1]:.3f} s (load {load_average():.1f})",
                      flush=True)
    return times


def ratio_summary(times: dict[str, list[float]], baseline: str, candidate: str) -> dict:
    """Median seconds and the speed-up of ``candidate`` over ``baseline`` (>1 = faster).

    ``speedup`` is the median of per-round ratios (each round's pair ran back to
    back, so the shared machine's load affects both alike); ``speedup_of_medians``
    and the min-based ratio are given alongside.
    """
    b, c = times[baseline], times[candidate]
    per_round = [bb / cc for bb, cc in zip(b, c)]
    return {
        "baseline_seconds_median": statistics.median(b),
        "candidate_seconds_median": statistics.median(c),
        "speedup": statistics.median(per_round),
        "speedup_per_round": per_round,
        "speedup_of_medians": statistics.median(b) / statistics.median(c),
        "speedup_of_minima": min(b) / min(c),
    }


def write_results(name: str, payload: dict) -> Path:
    from sparsebasin.io import write_json

    path = RESULTS / f"{name}.json"
    write_json(path, {"benchmark": name, "machine": machine(), "argv": sys.argv, **payload})
    print(f"wrote {path}")
    return path
