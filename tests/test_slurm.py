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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cluster.slurm_fixture import (  # noqa: E402
    TEST_PROFILE,
    copy_workflow,
    edit_cluster_block,
    local_slurm,  # noqa: F401  (session fixture)
    record,
    run_id,
    submitted_jobs,
)

REPO = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.slow, pytest.mark.slurm]

# The smallest configuration that runs every stage of the main study once:
# MNIST-1D MLP, one width, one seed, one sparsity, one rewind point; dense A
# and B, matching, IMP-FT, permuted mask, the three sparse branches, tidy
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


def _rules_on_gpu(profile: Path) -> set[str]:
    return set(yaml.safe_load(profile.read_text())["set-resources"])


def test_workflow_runs_through_sbatch(local_slurm, tmp_path, cli_env):  # noqa: F811
    cluster = local_slurm
    work = copy_workflow(REPO, tmp_path / "repo")
    # the user's one edit: the EDIT block of slurm/config.yaml
    profile = work / "slurm" / "config.yaml"
    edit_cluster_block(profile, account=ACCOUNT, partition="cpu", gpu_partition="gpu", gpu_model=cluster.gpu_type)
    gpu_rules = _rules_on_gpu(profile)
    (work / "tiny.yaml").write_text(yaml.safe_dump(TINY, sort_keys=False))

    env = dict(cli_env, SLURM_CONF=cluster.env["SLURM_CONF"])
    cmd = [
        sys.executable, "-m", "snakemake", "--profile", "slurm", "--profile", str(TEST_PROFILE),
        "--configfile", "tiny.yaml", "--verbose",
    ]
    # typed literally in the repository root, as docs/cluster.md says
    dry = subprocess.run(cmd + ["--dry-run"], cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert dry.returncode == 0, dry.stdout + dry.stderr

    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=SNAKEMAKE_TIMEOUT)
    seconds = time.monotonic() - t0
    log = proc.stdout + proc.stderr
    (tmp_path / "snakemake.log").write_text(log)
    assert proc.returncode == 0, log[-20000:]
    assert "Using profiles slurm and" in proc.stderr

    # --- every job went through sbatch --------------------------------------
    uuid = run_id(log)
    jobs = submitted_jobs(log)
    assert jobs, "Snakemake reported no SLURM submissions"
    ids = [j["slurm_id"] for j in jobs]
    assert len(set(ids)) == len(ids)
    # each rule's jobs; localrules (all, prepare, download) run in Snakemake
    squeue = {row["id"]: row for row in cluster.squeue_all(name=uuid)}
    assert set(squeue) == set(ids), f"squeue -t all --name {uuid}: {sorted(squeue)} vs submitted {sorted(ids)}"
    rules_seen = {}
    for j in jobs:
        info = cluster.scontrol_job(j["slurm_id"])
        assert info["JobName"] == uuid
        assert info["JobState"] == "COMPLETED", (j, info.get("JobState"), info.get("Reason"))
        assert info["WorkDir"] == str(work)
        assert info["Account"] == ACCOUNT
        rule = info["Comment"].removeprefix("rule_").split("_wildcards_")[0]
        rules_seen.setdefault(rule, []).append(j["slurm_id"])
        if rule in gpu_rules:
            # the GPU block: GPU partition and one GPU of the configured model
            assert info["Partition"] == "gpu", (rule, info["Partition"])
            assert f"gres:gpu:{cluster.gpu_type}:1" in info.get("TresPerJob", ""), (rule, info.get("TresPerJob"))
        else:
            assert info["Partition"] == "cpu", (rule, info["Partition"])
            assert "gpu" not in info.get("TresPerJob", "(null)").lower(), (rule, info.get("TresPerJob"))
        assert Path(j["log"]).is_file(), f"no SLURM log for job {j['slurm_id']}"

    # the main stages all ran as SLURM jobs
    for rule in ("dense", "match", "sparse"):
        assert any(r.startswith(rule) for r in rules_seen), f"no SLURM job for a {rule} rule: {sorted(rules_seen)}"
    assert any(r in gpu_rules for r in rules_seen)

    # --- the outputs: three sparse branches, summary --------------------------
    results = work / "results" / "slurmtest"
    branches = sorted(results.glob("mnist1d-mlp-w1/seed0/sparse/S0.5/k0/*/result.json"))
    assert {p.parent.name for p in branches} == {"lth", "naive", "permuted"}
    for p in branches:
        res = json.loads(p.read_text())
        assert 0.0 <= res["test_acc"] <= 1.0
    assert (results / "summary.md").is_file()

    record("e2e_seconds", round(seconds, 1))
    record("e2e_slurm_jobs", len(ids))
    record("e2e_rules", {r: len(v) for r, v in sorted(rules_seen.items())})
    print(f"\nSLURM end to end: {len(ids)} jobs in {seconds:.1f}s "
          f"(cluster bring-up {cluster.bringup_seconds:.1f}s); rules: "
          + ", ".join(f"{r}x{len(v)}" for r, v in sorted(rules_seen.items())))
