"""--deterministic (config deterministic: true): bit-identical GPU reruns; on CPU the same numbers, recorded in the request."""

from __future__ import annotations

import json
import subprocess
import sys

import torch

from sparsebasin.checkpoints import load_checkpoint
from sparsebasin.data import cifar


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
    assert rec["request"]["deterministic"] is True
    assert "deterministic" not in json.loads((tmp_path / "plain" / "result.json").read_text())["request"]
    # the setting determines GPU results, so a rerun without it is another run: refused unless --force
    res = subprocess.run([*common, "--out-dir", str(tmp_path / "det")], capture_output=True, text=True, timeout=300)
    assert res.returncode == 2 and "deterministic" in res.stderr, res.stderr[-2000:]


def test_the_workflow_passes_it_to_every_compute_step(tmp_path):
    from workflow_plan import plan_of

    plan = plan_of(None, deterministic=True)
    for kind in ("dense", "prune", "match", "sparse", "lmc", "plane"):
        job = next(iter(plan.jobs[kind].values()))
        assert "--deterministic" in plan.args(job), kind
    default = plan_of(None)
    assert "--deterministic" not in default.args(next(iter(default.jobs["dense"].values())))
