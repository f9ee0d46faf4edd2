"""Shared fixtures. Tests run on CPU with small widths and synthetic data."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent

sys.path.insert(0, str(Path(__file__).resolve().parent))
# The local SLURM cluster: one session fixture shared by every module that asks for it.
from cluster.slurm_fixture import local_slurm  # noqa: E402,F401
# The default workflow, run once as `make run` runs it: shared by the modules that need a finished run.
from default_run import default_run  # noqa: E402,F401


@pytest.fixture
def cli_env() -> dict:
    """Environment for subprocesses that run the CLI or snakemake from this venv."""
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("OMP_NUM_THREADS", "1")
    return env
