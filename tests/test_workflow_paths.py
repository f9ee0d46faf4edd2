"""Every path that reaches a shell is quoted (issue 31, item 4): the CUDA workflow's job commands from a checkout
whose path has spaces and non-ASCII characters reach workflow/scripts/gpu_slot.sh (on this CPU machine the job
then fails for lack of CUDA, with the step's own one line), where an unquoted path ran `bash /path/with` (127)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from workflow_plan import find

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent

pytestmark = pytest.mark.slow


def test_cuda_job_commands_from_a_checkout_path_with_spaces_and_non_ascii(tmp_path):
    checkout = tmp_path / "my work dir" / "éxpériences ü"
    checkout.mkdir(parents=True)
    for name in ("Snakefile", "config.yaml", "workflow", "src", "slurm", "envs"):
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copyfile)(src, checkout / name)
    cfg = yaml.safe_load((REPO / "config.yaml").read_text(encoding="utf-8"))
    cfg.update(device="cuda", fused=False, data_dir=str(tmp_path / "data dir"))
    (checkout / "cuda.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
    target = f"{find('dense', cfg, seed=0, net='A', width=1)}/result.json"
    env = dict(os.environ, PATH=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}", OMP_NUM_THREADS="1",
               SPARSEBASIN_GPUS="1", PYTHONPATH=str(checkout / "src"))
    res = subprocess.run([str(VENV_BIN / "snakemake"), target, "--cores", "1", "--configfile=cuda.yaml",
                          "--resources", "gpu=1"], cwd=checkout, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode != 0  # no CUDA here
    log = (checkout / "results" / "logs" / target.removeprefix("results/")).parent / "train.log"
    text = log.read_text(encoding="utf-8")
    assert "No such file or directory" not in text and "exit status 127" not in res.stderr, text
    assert "gpu_slot:" in text, text  # the wrapper was reached through the quoted path
    assert "CUDA is not available" in text and text.count("error:") == 1, text
