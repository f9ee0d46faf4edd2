"""A SLURM job that fails mid-training is resubmitted with more runtime and the run completes.

The one test of a retry on the cluster: the resubmission has ``runtime``
grown by ``attempt``, and it *succeeds* and finishes the work of the failed
attempt. The dense training job of a tiny config is cancelled with ``scancel`` once it has
written its ``.resume.pt`` (what SLURM does to a job that is pre-empted or out
of time); Snakemake resubmits it (attempt 2, larger time limit), the step
resumes after the last finished epoch and the workflow ends with exit 0.

Runs on the single-node cluster of tests/cluster (see docs/cluster.md).
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import yaml
from relutil import REPO, check_tree, small_mnist1d

sys.path.insert(0, str(REPO / "tests"))
from cluster import slurm_fixture as sf  # noqa: E402
from workflow_plan import find  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.slurm]

ACCOUNT = "sparsebasin_test"
CONFIG = {
    "device": "cpu",
    "threads": 1,
    "experiments": {
        "slurmretry": {
            "cells": [{
                "dataset": "mnist1d",
                "model": "mlp",
                "model_args": {"depth": 1, "hidden": 16},
                "widths": [1],
                "seeds": [0],
                "dense": {"epochs": 25, "lr": 0.05, "momentum": 0.9, "weight_decay": 0.0005, "batch_size": 4},
                "sparse": {"lr": 0.05},
                "prune": {"rate": 0.5, "ft_epochs": 1, "ft_lr": 0.01},
                "match": {"batches": 2, "batch_size": 128},
                "sweep": {"sparsities": [0.5], "rewind": [0]},
            }],
        }
    },
}
RUN = find("dense", CONFIG, net="A")


def _minutes(limit: str) -> int:
    days, _, hms = limit.rpartition("-")
    h, m, s = (int(x) for x in hms.split(":"))
    return int(days or 0) * 1440 + h * 60 + m + (1 if s else 0)


def test_cancelled_job_is_retried_with_more_runtime_and_completes(local_slurm, tmp_path, cli_env):
    cluster = local_slurm
    work = sf.copy_workflow(REPO, tmp_path / "repo")
    sf.edit_cluster_block(work / "slurm" / "config.yaml", account=ACCOUNT, partition="cpu", gpu_partition="gpu",
                          gpu_model="")
    (work / "tiny.yaml").write_text(yaml.safe_dump(CONFIG, sort_keys=False))
    small_mnist1d(work / "data")
    env = dict(cli_env, SLURM_CONF=cluster.env["SLURM_CONF"])
    cmd = [sys.executable, "-m", "snakemake", "--profile", "slurm", "--profile", str(sf.TEST_PROFILE),
           "--configfile", "tiny.yaml", "--retries", "1", "--seconds-between-status-checks", "2", f"{RUN}/final.pt"]
    log_path = tmp_path / "snakemake.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        resume = work / RUN / ".resume.pt"
        deadline = time.monotonic() + 600
        while not resume.exists():
            assert proc.poll() is None, log_path.read_text()[-5000:]
            assert time.monotonic() < deadline, "the dense job never wrote its resume file"
            time.sleep(0.02)
        running = [r for r in cluster.squeue_all() if r["comment"].startswith("rule_dense")
                   and r["state"] == "RUNNING" and str(work) in cluster.scontrol_job(r["id"]).get("WorkDir", "")]
        assert len(running) == 1, running
        first_id = running[0]["id"]
        subprocess.run(["scancel", first_id], env=cluster.env, check=True, timeout=30)
        proc.wait(timeout=420)  # a controller outage can make the plugin poll forever (docs/reliability.md)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log_path.read_text()
    assert proc.returncode == 0, text[-8000:]

    dense = [j for j in sf.submitted_jobs(text)
             if sf.parse_scontrol(subprocess.run(["scontrol", "show", "job", "-o", j["slurm_id"]], env=cluster.env,
                                                 capture_output=True, text=True).stdout).get("Comment", "")
             .startswith("rule_dense")]
    assert [j["slurm_id"] for j in dense][:1] == [first_id], (first_id, dense)
    assert len(dense) == 2, f"expected the cancelled job and one retry: {dense}"
    first, second = (cluster.scontrol_job(j["slurm_id"]) for j in dense)
    assert first["JobState"] == "CANCELLED", first["JobState"]
    assert second["JobState"] == "COMPLETED", second["JobState"]
    assert _minutes(second["TimeLimit"]) > _minutes(first["TimeLimit"]), (first["TimeLimit"], second["TimeLimit"])
    assert "Trying to restart job" in text

    step_log = (work / "results" / "logs" / RUN.removeprefix("results/") / "train.log").read_text()
    assert "resuming after epoch" in step_log, step_log[-3000:]
    kinds = check_tree(work / RUN)
    assert kinds["final.pt"] == "checkpoint" and kinds["result.json"] == "json"
    assert not (work / RUN / ".resume.pt").exists()
    resumed_at = step_log.split("resuming after epoch ")[1].split()[0]
    print(f"\nSLURM job {first_id} cancelled mid-training (TimeLimit {first['TimeLimit']}); retry "
          f"{dense[1]['slurm_id']} (TimeLimit {second['TimeLimit']}) resumed after epoch {resumed_at} and completed")
