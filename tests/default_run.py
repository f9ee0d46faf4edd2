"""The built-in default config, run once end to end the way `make run` runs it, for every test that needs a
finished workflow (tests/test_workflow_e2e.py, test_report_html.py, test_make_run_output.py).

`make run` is `workflow/scripts/follow.py --report report.html -- snakemake --cores all` (tests/
test_make_run_output.py checks the Makefile says so); here with 2 cores, a status line every 5 s, in a
temporary working directory.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent

# The demo's scorecard headline. A run at chance accuracy is flagged (sparsebasin.health) and the headline
# counts its cells: the random-mask control at 95% sparsity on the narrowest MLP ends near chance (11.6% and
# 14.1% on one machine), so whether it is flagged differs between CPUs; the rest of the line does not.
HEADLINE = re.compile(r"No published reference for this experiment \(MNIST-1D MLP\)"
                      r"(; \d+ of our cells flagged † \(runs dead or diverged, or values non-finite\))?"
                      r"; permuted > naive significant in ")


@dataclass
class Run:
    workdir: Path
    output: str  # what the person running it saw (stdout and stderr)
    seconds: float


def follow_command(*snakemake_args: str, every: float = 5) -> list[str]:
    return [sys.executable, str(REPO / "workflow/scripts/follow.py"), "--every", str(every), "--report", "report.html",
            "--", str(VENV_BIN / "snakemake"), "-s", str(REPO / "Snakefile"), *snakemake_args]


def run_env() -> dict:
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


@pytest.fixture(scope="session")
def default_run(tmp_path_factory) -> Run:
    workdir = tmp_path_factory.mktemp("default_run")
    t0 = time.perf_counter()
    res = subprocess.run(follow_command("--cores", "2"), cwd=workdir, env=run_env(), stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, timeout=1800)
    seconds = time.perf_counter() - t0
    print(f"default config end to end: {seconds:.0f} s")
    assert res.returncode == 0, res.stdout[-5000:]
    return Run(workdir, res.stdout, seconds)
