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


@pytest.mark.slow
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
    res = slot(e, SPARSEBASIN_GPUS_PER_JOB="2", CUDA_VISIBLE_DEVICES="3,2")
    assert res.stdout.split()[0] == "3,2", res.stderr


# ------------------------------------------------ every variable checked --

FOUR = 'for i in 0 1 2 3; do echo "GPU $i: NVIDIA A100 (UUID: GPU-$i)"; done'


@pytest.mark.parametrize("extra,words", [
    ({"CUDA_VISIBLE_DEVICES": ""}, ["CUDA_VISIBLE_DEVICES is set but empty", "no GPU"]),
    ({"CUDA_VISIBLE_DEVICES": " "}, ["CUDA_VISIBLE_DEVICES is set but empty"]),
    ({"CUDA_VISIBLE_DEVICES": ",,"}, ["has the entry ''", "list GPUs like 0,1,2"]),
    ({"CUDA_VISIBLE_DEVICES": "0,"}, ["has the entry ''"]),
    ({"CUDA_VISIBLE_DEVICES": "../../x,1"}, ["has the entry '../../x'"]),
    ({"CUDA_VISIBLE_DEVICES": "-1"}, ["hides the GPUs", "device: cpu"]),
    ({"CUDA_VISIBLE_DEVICES": "../../x"}, ["has the entry '../../x'"]),  # one device: checked too
    ({"CUDA_VISIBLE_DEVICES": "0,0", "SPARSEBASIN_GPUS_PER_JOB": "2"}, ["lists GPU 0 twice"]),
    ({"CUDA_VISIBLE_DEVICES": "1,01"}, ["lists GPU 1 twice"]),
    ({"CUDA_VISIBLE_DEVICES": "2,7"}, ["lists GPU 7 but this machine has 4"]),
    ({"SPARSEBASIN_GPUS": "-1"}, ["SPARSEBASIN_GPUS='-1' is not a positive integer"]),
    ({"SPARSEBASIN_GPUS": "abc"}, ["SPARSEBASIN_GPUS='abc' is not a positive integer"]),
    ({"SPARSEBASIN_GPUS": "0"}, ["SPARSEBASIN_GPUS='0' is not a positive integer"]),
    ({"SPARSEBASIN_GPUS": "99999999999999999999"}, ["is not a positive integer"]),
    ({"SPARSEBASIN_GPUS": "1000"}, ["SPARSEBASIN_GPUS=1000 but this machine has 4"]),
    ({"SPARSEBASIN_GPUS_PER_JOB": "0"}, ["SPARSEBASIN_GPUS_PER_JOB='0' is not a positive integer"]),
    ({"SPARSEBASIN_GPUS_PER_JOB": "99999999999999999999"}, ["SPARSEBASIN_GPUS_PER_JOB="]),
    ({"SPARSEBASIN_GPU_WAIT": "soon"}, ["SPARSEBASIN_GPU_WAIT='soon' is not a number of seconds"]),
])
def test_every_variable_is_checked_in_one_line(env, extra, words):
    e, bin_dir = env
    fake(bin_dir, "nvidia-smi", FOUR)
    res = slot(e, **extra)
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1 and res.stdout == "", (extra, res.stderr)
    assert lines[0].startswith("gpu_slot: ") and all(w in lines[0] for w in words), (extra, lines[0])
    locks = Path(e["SPARSEBASIN_GPU_LOCKS"])
    assert not locks.exists() or sorted(p.name for p in locks.iterdir()) == []  # no lock file named from a bad id


def test_an_unchecked_value_never_becomes_a_path(env, tmp_path):
    e, bin_dir = env
    fake(bin_dir, "nvidia-smi", FOUR)
    slot(e, CUDA_VISIBLE_DEVICES="../../escaped,1", SPARSEBASIN_GPUS_PER_JOB="2")
    slot(e, CUDA_VISIBLE_DEVICES=",,", SPARSEBASIN_GPUS_PER_JOB="2")
    assert not list(tmp_path.rglob("escaped.lock")) and not list(tmp_path.rglob("gpu.lock"))


def test_a_lock_directory_that_cannot_be_used_is_one_line(env, tmp_path):
    e, bin_dir = env
    fake(bin_dir, "nvidia-smi", FOUR)
    (tmp_path / "file").write_text("not a directory")
    res = slot(e, SPARSEBASIN_GPU_LOCKS=str(tmp_path / "file" / "locks"))
    assert res.returncode == 2 and "SPARSEBASIN_GPU_LOCKS=" in res.stderr and len(res.stderr.splitlines()) == 1


@pytest.mark.slow
def test_a_waiting_job_says_for_what_and_gives_up_at_its_limit(env, tmp_path):
    e, bin_dir = env
    fake(bin_dir, "nvidia-smi", 'echo "GPU 0: X (UUID: GPU-0)"; echo "GPU 1: X (UUID: GPU-1)"')
    first = hold(e, tmp_path / "first")
    second = hold(e, tmp_path / "second")
    try:
        t0 = time.monotonic()
        res = slot(e, SPARSEBASIN_GPU_WAIT="3")
        seconds = time.monotonic() - t0
    finally:
        release(first, second)
    assert res.returncode == 75 and res.stdout == "", res.stderr
    lines = res.stderr.strip().splitlines()
    assert "waiting for 1 free GPU(s) among slots 0 1" in lines[0] and "SPARSEBASIN_GPU_WAIT" in lines[0]
    assert "GPU 0: pid" in lines[0] and "GPU 1: pid" in lines[0]  # who holds them
    assert "gave up after" in lines[-1] and "SPARSEBASIN_GPU_WAIT=3" in lines[-1]
    assert 3 <= seconds < 30
    res = slot(e, SPARSEBASIN_GPU_WAIT="3")  # the slots are free again: no stale lock blocks
    assert res.returncode == 0 and res.stdout.split()[0] == "0", res.stderr


def test_a_uuid_list_is_slots_too(env, tmp_path):
    e, _ = env
    res = slot(e, CUDA_VISIBLE_DEVICES="GPU-8f2a,GPU-77c1")
    assert res.returncode == 0 and res.stdout.split()[0] == "GPU-8f2a", res.stderr
