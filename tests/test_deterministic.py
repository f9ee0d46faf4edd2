"""--deterministic (config deterministic: true): bit-identical GPU reruns; on CPU the same numbers; recorded in
the run's provenance. How reproducible the kernels are never makes it another run (like the thread count it may
move the last bits on a GPU), so toggling it reruns nothing (issue 27, item 4)."""

from __future__ import annotations

import pytest

import json
import subprocess
import sys

import torch

from sparsebasin.checkpoints import load_checkpoint
from sparsebasin.data import cifar


@pytest.mark.slow
def test_deterministic_runs_on_cpu_give_the_same_weights_and_are_recorded(tmp_path):
    cifar.write_synthetic("cifar10", tmp_path / "data", 128, 32)
    common = [sys.executable, "-m", "sparsebasin", "train", "--dataset", "cifar10", "--data-dir", str(tmp_path / "data"),
              "--model", "resnet20", "--width", "1", "--epochs", "1", "--batch-size", "64", "--device", "cpu",
              "--threads", "1", "--progress", "log", "--precision", "fp32"]
    for name, extra in (("plain", []), ("det", ["--deterministic"])):
        res = subprocess.run([*common, *extra, "--out-dir", str(tmp_path / name)], capture_output=True, text=True,
                             timeout=300)
        assert res.returncode == 0, res.stderr[-2000:]
    a, b = (load_checkpoint(tmp_path / n / "final.pt")["state_dict"] for n in ("plain", "det"))
    assert all(torch.equal(a[k], b[k]) for k in a)  # CPU kernels are deterministic already
    rec = json.loads((tmp_path / "det" / "result.json").read_text())
    assert rec["provenance"]["config"]["deterministic"] is True and "deterministic" not in rec["request"]
    assert "deterministic" not in json.loads((tmp_path / "plain" / "result.json").read_text())["provenance"]["config"]
    # the same run either way: a rerun without it finds the run finished
    res = subprocess.run([*common, "--out-dir", str(tmp_path / "det")], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and "already finished" in res.stderr, res.stderr[-2000:]


def test_the_workflow_passes_it_to_every_compute_step(tmp_path):
    from workflow_plan import plan_of

    plan = plan_of(None, deterministic=True)
    # every rule puts run_only_args() (training) or run_only_args(training=False) on its command line, outside
    # Snakemake's params, so toggling it reruns nothing
    assert "--deterministic" in plan.run_only_args() and "--deterministic" in plan.run_only_args(training=False)
    for kind in ("dense", "prune", "match", "sparse", "lmc", "plane"):
        assert "--deterministic" not in plan.args(next(iter(plan.jobs[kind].values()))), kind
    assert "--deterministic" not in plan_of(None).run_only_args()
