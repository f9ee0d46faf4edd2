"""End to end on a real SLURM cluster: a small configuration of the real
workflow run with `snakemake --profile slurm` from a repository root, on the
single-node cluster of tests/cluster/local_slurm.sh.

Every job must have gone through sbatch: the test takes the SLURM job ids
from Snakemake's log and checks each one with `scontrol show job` (state,
partition, account, GPUs, working directory, rule) and `squeue -t all`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from snakemake_output import job_stats
from workflow_plan import find

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cluster.slurm_fixture import (  # noqa: E402
    TEST_PROFILE,
    copy_workflow,
    edit_cluster_block,
    record,
    run_id,
    submitted_jobs,
)

REPO = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.slow, pytest.mark.slurm]

# The smallest configuration that runs every stage of the main study once:
# MNIST-1D MLP, one width, one seed, one sparsity, one rewind point; dense A
# and B, matching, IMP-FT, the three sparse branches (pi(m_A) made by the permuted one), tidy
# tables, figures and the summary.
TINY = {
    "device": "cpu",
    "threads": 1,
    "experiments": {
        "slurmtest": {
            "description": "end-to-end SLURM test (tests/test_slurm.py)",
            "cells": [
                {
                    "dataset": "mnist1d",
                    "model": "mlp",
                    "widths": [1],
                    "seeds": [0],
                    "train_subset": 512,
                    "dense": {"epochs": 2, "lr": 0.05, "momentum": 0.9, "weight_decay": 0.0005, "batch_size": 128},
                    "sparse": {"lr": 0.05},
                    "prune": {"rate": 0.5, "ft_epochs": 1, "ft_lr": 0.01},
                    "match": {"batches": 2, "batch_size": 128},
                    "sweep": {"sparsities": [0.5], "rewind": [0]},
                }
            ],
        }
    },
}

ACCOUNT = "sparsebasin_test"
SNAKEMAKE_TIMEOUT = 900  # a misconfigured status command hangs instead of failing


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """One MNIST-1D data dir for both runs: `prepare` (a local rule, ~20 s)
    then runs once per module instead of once per test."""
    return tmp_path_factory.mktemp("slurm-data")


def _prepare(cluster, tmp_path: Path, cli_env: dict, data_dir: Path, **config) -> tuple[Path, dict, list[str]]:
    """A repository copy with the user's one edit (the EDIT block of
    slurm/config.yaml filled in for the test cluster), the tiny config, and
    the command a user types in the repository root, plus the test overlay
    profile (squeue status polling: the test cluster has no slurmdbd)."""
    work = copy_workflow(REPO, tmp_path / "repo")
    edit_cluster_block(work / "slurm" / "config.yaml", account=ACCOUNT, partition="cpu",
                       gpu_partition="gpu", gpu_model=cluster.gpu_type)
    cfg = TINY | {"data_dir": str(data_dir)} | config
    (work / "tiny.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    env = dict(cli_env, SLURM_CONF=cluster.env["SLURM_CONF"])
    cmd = [sys.executable, "-m", "snakemake", "--profile", "slurm", "--profile", str(TEST_PROFILE),
           "--configfile", "tiny.yaml", "--verbose"]
    return work, env, cmd


def _run(cmd, work, env, tmp_path, name):
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=SNAKEMAKE_TIMEOUT)
    seconds = time.monotonic() - t0
    log = proc.stdout + proc.stderr
    (tmp_path / f"{name}.log").write_text(log)
    assert "Using profiles slurm and" in proc.stderr, proc.stderr[-3000:]
    return proc, log, seconds


LOCAL_RULES = {"all", "prepare", "download"}  # the Snakefile's localrules


def _rule(info: dict) -> str:
    return info["Comment"].removeprefix("rule_").split("_wildcards_")[0]


def test_workflow_runs_through_sbatch(local_slurm, tmp_path, cli_env, data_dir):
    """device=cpu: every job of the tiny study is a SLURM job on the CPU
    partition under the configured account, and the study completes."""
    cluster = local_slurm
    work, env, cmd = _prepare(cluster, tmp_path, cli_env, data_dir)
    dry = subprocess.run(cmd + ["--dry-run"], cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert dry.returncode == 0, dry.stdout + dry.stderr

    proc, log, seconds = _run(cmd, work, env, tmp_path, "snakemake")
    assert proc.returncode == 0, log[-20000:]

    # --- every job went through sbatch --------------------------------------
    uuid = run_id(log)
    jobs = submitted_jobs(log)
    assert jobs, "Snakemake reported no SLURM submissions"
    ids = [j["slurm_id"] for j in jobs]
    assert len(set(ids)) == len(ids)
    squeue = {row["id"]: row for row in cluster.squeue_all(name=uuid)}
    assert set(squeue) == set(ids), f"squeue -t all --name {uuid}: {sorted(squeue)} vs submitted {sorted(ids)}"
    rules_seen: dict[str, list[str]] = {}
    for j in jobs:
        info = cluster.scontrol_job(j["slurm_id"])
        assert info["JobName"] == uuid
        assert info["JobState"] == "COMPLETED", (j, info.get("JobState"), info.get("Reason"))
        assert info["WorkDir"] == str(work)
        assert info["Account"] == ACCOUNT
        assert info["Partition"] == "cpu", (j, info["Partition"])
        assert info.get("TresPerJob", "(null)") == "(null)", ("no GPU with device=cpu", j, info.get("TresPerJob"))
        rules_seen.setdefault(_rule(info), []).append(j["slurm_id"])
        assert Path(j["log"]).is_file(), f"no SLURM log for job {j['slurm_id']}"
    for prefix in ("dense", "prune", "match", "sparse", "collect", "summary"):
        assert any(r.startswith(prefix) for r in rules_seen), f"no SLURM job for {prefix}*: {sorted(rules_seen)}"
    # localrules (all, prepare) ran inside Snakemake, not as SLURM jobs;
    # every other job of the DAG was a SLURM job
    assert "prepare" not in rules_seen and "all" not in rules_seen
    planned = job_stats(dry.stdout + dry.stderr)
    remote = {r: n for r, n in planned.items() if r not in LOCAL_RULES}
    assert {r: len(v) for r, v in rules_seen.items()} == remote, (planned, sorted(rules_seen))

    # --- the outputs: three sparse branches, summary --------------------------
    tiny = TINY | {"data_dir": str(data_dir)}
    for branch in ("lth", "naive", "permuted"):
        result = work / find("sparse", tiny, branch=branch) / "result.json"
        assert 0.0 <= json.loads(result.read_text())["test_acc"] <= 1.0
    assert (work / "results" / "slurmtest" / "summary.md").is_file()

    record("e2e_seconds", round(seconds, 1))
    record("e2e_slurm_jobs", len(ids))
    record("e2e_rules", {r: len(v) for r, v in sorted(rules_seen.items())})
    print(f"\nSLURM end to end: {len(ids)} jobs in {seconds:.1f}s "
          f"(cluster bring-up {cluster.bringup_seconds:.1f}s); rules: "
          + ", ".join(f"{r} x{len(v)}" for r, v in sorted(rules_seen.items())))


def test_gpu_step_gets_gpus_of_the_model(local_slurm, tmp_path, cli_env, data_dir):
    """device=cuda: the dense training job asks for gpu=2 (gpus_per_run: 2), the profile's GPU
    block adds the GPU partition and model, and SLURM allocates two fake GPUs
    of that model. This machine has no CUDA, so the step itself fails
    (torchrun's ranks find no CUDA device); --retries 0: one submission (a failed job's retry with
    more runtime is tests/reliability/test_slurm_retry.py)."""
    cluster = local_slurm
    # two GPUs per run (gpus_per_run): the request is gres gpu:<model>:2, one task that torchrun fills
    cell = TINY["experiments"]["slurmtest"]["cells"][0] | {"gpus_per_run": 2}
    experiments = {"slurmtest": TINY["experiments"]["slurmtest"] | {"cells": [cell]}}
    work, env, cmd = _prepare(cluster, tmp_path, cli_env, data_dir, device="cuda", experiments=experiments)
    target = find("dense", TINY | {"data_dir": str(data_dir), "device": "cuda", "experiments": experiments},
                  net="A") + "/final.pt"
    proc, log, seconds = _run(cmd + ["--retries", "0", target], work, env, tmp_path, "snakemake-gpu")
    assert proc.returncode != 0, "a CUDA job cannot succeed on this machine"

    jobs = submitted_jobs(log)
    infos = [cluster.scontrol_job(j["slurm_id"]) for j in jobs]
    dense = [i for i in infos if _rule(i).startswith("dense")]
    assert len(dense) == 1, f"expected the one dense job, got {[(_rule(i), i['JobId']) for i in infos]}"
    for info in dense:
        assert info["Partition"] == "gpu", info["Partition"]
        assert info["TresPerJob"] == f"gres:gpu:{cluster.gpu_type}:2", info.get("TresPerJob")
        assert info["Account"] == ACCOUNT
        assert info["JobState"] == "FAILED", info["JobState"]
    logs = list((work / "results" / "logs").rglob("*.log"))
    # two processes: each rank stops where it joins the group ("no CUDA device visible to rank N")
    assert any("no CUDA device visible to rank" in p.read_text(errors="replace") for p in logs), (
        "the dense step should have run with --device cuda and stopped on the missing CUDA", logs)
    record("gpu_request_seconds", round(seconds, 1))


def test_a_data_parallel_run_is_one_sbatch_job_of_two_processes(local_slurm, tmp_path, cli_env, data_dir):
    """gpus_per_run: 2 on CPU: the dense job is one SLURM job asking for both processes' CPUs, torchrun starts
    two gloo processes in it, and the run records them (with device: cuda it asks for two GPUs: the test above)."""
    cluster = local_slurm
    cell = TINY["experiments"]["slurmtest"]["cells"][0] | {"gpus_per_run": 2}
    experiments = {"slurmtest": TINY["experiments"]["slurmtest"] | {"cells": [cell]}}
    work, env, cmd = _prepare(cluster, tmp_path, cli_env, data_dir, experiments=experiments)
    tiny = TINY | {"data_dir": str(data_dir), "experiments": experiments}
    target = find("dense", tiny, net="A")
    proc, log, _ = _run(cmd + [target + "/final.pt"], work, env, tmp_path, "snakemake-ddp")
    assert proc.returncode == 0, log[-20000:]
    dense = [cluster.scontrol_job(j["slurm_id"]) for j in submitted_jobs(log)]
    dense = [i for i in dense if _rule(i).startswith("dense")]
    assert len(dense) == 1 and dense[0]["JobState"] == "COMPLETED" and dense[0]["NumCPUs"] == "2", dense
    result = json.loads((work / target / "result.json").read_text())
    assert result["request"]["processes"] == 2
    train_log = next((work / "results" / "logs").rglob("train.log")).read_text()
    assert "distributed: 2 processes, backend gloo" in train_log

