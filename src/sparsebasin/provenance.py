"""What produced a result: recorded in every result file."""

from __future__ import annotations

import functools
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from . import __version__

if TYPE_CHECKING:
    import torch


@functools.lru_cache(maxsize=1)
def torch_version() -> str | None:
    """torch's version, read from its installed metadata unless torch is loaded already.

    Analysis steps record it too but never import torch (2 s and 500 MB a job).
    """
    loaded = sys.modules.get("torch")
    if loaded is not None:
        return str(loaded.__version__)
    import importlib.util
    import re

    spec = importlib.util.find_spec("torch")  # locates the package without running it
    if spec is None or not spec.submodule_search_locations:
        return None
    try:  # torch/version.py carries the build's full version, "+cu130" included (its metadata does not)
        text = (Path(next(iter(spec.submodule_search_locations))) / "version.py").read_text(encoding="utf-8")
    except OSError:
        return None
    found = re.search(r"^__version__\s*=\s*['\"]([^'\"]+)['\"]", text, re.M)
    return found.group(1) if found else None


@functools.lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The commit of the source tree, or SPARSEBASIN_GIT_COMMIT, or None."""
    env = os.environ.get("SPARSEBASIN_GIT_COMMIT")
    if env:
        return env
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5,
        ).stdout.strip()
        return out + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def collect(config: dict | None = None, seeds: dict | None = None, device: str | torch.device | None = None) -> dict:
    """Provenance dict: resolved config, seeds, code and library versions, host."""
    return {
        "config": config or {},
        "seeds": seeds or {},
        "sparsebasin_version": __version__,
        "git_commit": git_commit(),
        "torch_version": torch_version(),
        "python_version": platform.python_version(),
        "device": str(device) if device is not None else None,
        "hostname": socket.gethostname(),
        "argv": list(sys.argv),
        # which scheduler job made it, when one did (SLURM array/job, GPU assignment)
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
