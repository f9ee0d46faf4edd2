"""workflow/scripts/gpu_slot.sh: which GPU a workstation job gets (fake nvidia-smi, fake torch, preset devices)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "workflow" / "scripts" / "gpu_slot.sh"
PRINT = ["sh", "-c", 'echo "$CUDA_VISIBLE_DEVICES $CUDA_DEVICE_ORDER"']


@pytest.fixture
def env(tmp_path):
    """No GPU tool on PATH but the basics; locks in a private directory; no SLURM, no preset devices."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("sh", "bash", "flock", "grep", "id", "mkdir", "chmod", "sleep", "cat"):
        path = next((Path(d) / tool for d in ("/usr/bin", "/bin") if (Path(d) / tool).exists()), None)
        if path:
            (bin_dir / tool).symlink_to(path)
    e = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "CUDA_", "SPARSEBASIN_"))}
    e.update(PATH=str(bin_dir), SPARSEBASIN_GPU_LOCKS=str(tmp_path / "locks"), SPARSEBASIN_PYTHON="false")
    return e, bin_dir


def fake(bin_dir: Path, name: str, body: str) -> None:
    (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
    (bin_dir / name).chmod(0o755)


def slot(env: dict, cmd=PRINT, **extra) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *cmd], env={**env, **extra}, capture_output=True, text=True,
                          timeout=60)


def hold(env: dict, marker: Path, **extra) -> subprocess.Popen:
    """A job that takes a slot, writes its GPU to ``marker`` and keeps the slot until :func:`release`."""
    proc = subprocess.Popen(["bash", str(SCRIPT), "sh", "-c", f'echo "$CUDA_VISIBLE_DEVICES" > {marker}; sleep 60'],
                            env={**env, **extra}, stderr=subprocess.DEVNULL, start_new_session=True)
    for _ in range(100):
        if marker.exists() and marker.read_text().strip():
            return proc
        time.sleep(0.05)
    raise AssertionError("the holding job never started")


def release(*procs: subprocess.Popen) -> None:
    """End holding jobs (the script, its command and the lock they share)."""
    for proc in procs:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def test_slots_come_from_nvidia_smi_and_two_jobs_get_two_gpus(env, tmp_path):
    e, bin_dir = env
    fake(bin_dir, "nvidia-smi", 'for i in 0 1 2 3; do echo "GPU $i: NVIDIA A100 (UUID: GPU-$i)"; done')
    first = hold(e, tmp_path / "first")
    res = slot(e)
    release(first)
    assert (tmp_path / "first").read_text().strip() == "0"
    assert res.returncode == 0 and res.stdout.split() == ["1", "PCI_BUS_ID"], res.stderr
    assert (tmp_path / "locks" / "gpu0.lock").exists() and (tmp_path / "locks" / "gpu1.lock").exists()


def test_a_preset_list_of_devices_is_the_slots(env, tmp_path):
    e, _ = env
    first = hold(e, tmp_path / "first", CUDA_VISIBLE_DEVICES="2,5")
    res = slot(e, CUDA_VISIBLE_DEVICES="2,5")
    release(first)
    assert (tmp_path / "first").read_text().strip() == "2"
    assert res.stdout.split()[0] == "5", res.stderr  # not both on the first listed GPU


@pytest.mark.parametrize("extra,expect", [({"CUDA_VISIBLE_DEVICES": "3"}, "3"),
                                          ({"SLURM_JOB_ID": "77", "CUDA_VISIBLE_DEVICES": "0,1"}, "0,1")])
def test_one_preset_device_or_a_slurm_job_runs_as_is(env, extra, expect):
    e, _ = env
    res = slot(e, **extra)
    assert res.returncode == 0 and res.stdout.split() == [expect, "PCI_BUS_ID"], res.stderr
    assert not (Path(e["SPARSEBASIN_GPU_LOCKS"])).exists()  # no lock files: the scheduler chose


def test_without_nvidia_smi_torch_counts_the_gpus(env, tmp_path):
    e, bin_dir = env
    fake(bin_dir, "fakepython", "echo 3")
    first = hold(e, tmp_path / "a", SPARSEBASIN_PYTHON=str(bin_dir / "fakepython"))
    second = hold(e, tmp_path / "b", SPARSEBASIN_PYTHON=str(bin_dir / "fakepython"))
    res = slot(e, SPARSEBASIN_PYTHON=str(bin_dir / "fakepython"))
    release(first, second)
    assert {(tmp_path / n).read_text().strip() for n in "ab"} == {"0", "1"}
    assert res.stdout.split()[0] == "2", res.stderr


def test_no_gpu_found_says_so_loudly(env):
    e, _ = env
    res = slot(e)
    assert res.returncode == 0 and res.stdout.split()[0] == "0"
    assert "WARNING: found no GPU" in res.stderr and "assuming ONE GPU" in res.stderr


def test_locks_are_per_user_by_default(env, tmp_path):
    e, bin_dir = env
    e = {k: v for k, v in e.items() if k != "SPARSEBASIN_GPU_LOCKS"}
    fake(bin_dir, "nvidia-smi", 'echo "GPU 0: X (UUID: GPU-0)"')
    res = slot(e)
    assert res.returncode == 0, res.stderr
    assert Path(f"/tmp/sparsebasin-gpu-locks-{os.getuid()}/gpu0.lock").exists()


def test_the_workflow_warns_when_gpus_would_sit_idle(tmp_path):
    """A workstation with 4 GPUs run with gpu=1 (local/config.yaml's default) says so at start."""
    import sys

    import yaml

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake(bin_dir, "nvidia-smi", 'for i in 0 1 2 3; do echo "GPU $i: NVIDIA A100 (UUID: GPU-$i)"; done')
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["device"] = "cuda"
    (tmp_path / "cuda.yaml").write_text(yaml.safe_dump(config))
    env = {**os.environ, "PATH": f"{bin_dir}:{Path(sys.executable).parent}:{os.environ['PATH']}"}
    env = {k: v for k, v in env.items() if not k.startswith("SLURM_")}
    snakemake = [str(Path(sys.executable).parent / "snakemake"), "-s", str(REPO / "Snakefile"), "-d", str(tmp_path),
                 "-n", "--cores", "1", f"--configfile={tmp_path / 'cuda.yaml'}"]
    res = subprocess.run([*snakemake, "--resources", "gpu=1"], env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "this machine has 4 GPUs but --resources gpu=1" in res.stderr and "pass --resources gpu=4" in res.stderr
    res = subprocess.run([*snakemake, "--resources", "gpu=4"], env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and "this machine has" not in res.stderr


def test_a_data_parallel_job_takes_as_many_free_gpus_as_it_has_processes(env, tmp_path):
    e, bin_dir = env
    fake(bin_dir, "nvidia-smi", 'for i in 0 1 2 3; do echo "GPU $i: NVIDIA A100 (UUID: GPU-$i)"; done')
    first = hold(e, tmp_path / "first")  # GPU 0 busy
    res = slot(e, SPARSEBASIN_GPUS_PER_JOB="2")
    assert res.returncode == 0 and res.stdout.split()[0] == "1,2", res.stderr
    res = slot(e, SPARSEBASIN_GPUS_PER_JOB="3")  # 1, 2 and 3 are free again once that job ended
    release(first)
    assert res.stdout.split()[0] == "1,2,3", res.stderr
    res = slot(e, SPARSEBASIN_GPUS_PER_JOB="8")
    assert res.returncode == 2 and "needs 8 GPUs but this machine has 4" in res.stderr
    res = slot(e, SPARSEBASIN_GPUS_PER_JOB="2", CUDA_VISIBLE_DEVICES="5,6")
    assert res.stdout.split()[0] == "5,6", res.stderr
