"""--compile (config compile: graphs | inductor): the training step compiled by torch.compile, on CPU here
(graphs runs the inductor kernels without CUDA graphs, the same code path); recorded, cached, refused where
it cannot apply."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from datafiles import write_random_mask

from sparsebasin.checkpoints import load_checkpoint


def _cli(*argv, timeout=300):
    return subprocess.run([sys.executable, "-m", "sparsebasin", *map(str, argv)], capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.slow
def test_compiled_training_matches_eager_keeps_masks_and_is_recorded(tmp_path):
    data = ["--dataset", "mnist1d", "--data-dir", tmp_path / "data", "--train-subset", 512]
    common = [*data, "--model", "mlp", "--hidden", 32, "--epochs", 2, "--batch-size", 64, "--lr", 0.1,
              "--device", "cpu", "--threads", 1, "--progress", "log"]
    cache = tmp_path / "cache"
    eager = _cli("train", *common, "--save-epochs", 0, "--out-dir", tmp_path / "eager")
    assert eager.returncode == 0, eager.stderr[-2000:]
    res = _cli("train", *common, "--compile", "graphs", "--compile-cache", cache, "--out-dir", tmp_path / "graphs")
    assert res.returncode == 0, res.stderr[-2000:]
    a, b = (load_checkpoint(tmp_path / n / "final.pt")["state_dict"] for n in ("eager", "graphs"))
    assert all(torch.allclose(a[k], b[k], rtol=1e-4, atol=1e-6) for k in a)  # other kernels, other rounding
    graphs = json.loads((tmp_path / "graphs" / "result.json").read_text())
    assert graphs["provenance"]["config"]["compile"] == "graphs"
    assert "compile" not in json.loads((tmp_path / "eager" / "result.json").read_text())["provenance"]["config"]
    assert any((cache / "inductor").rglob("*")), "the kernels go to the persistent cache"
    # compiled kernels round otherwise, as another thread count does, but never make it another run: the request
    # (what "finished" is judged by) leaves compilation out, so toggling it reruns nothing (issue 27, item 4)
    assert "compile" not in graphs["request"]
    res = _cli("train", *common, "--out-dir", tmp_path / "graphs")
    assert res.returncode == 0 and "already finished" in res.stderr, res.stderr[-2000:]

    # a masked run (sparse): pruned weights stay exactly zero through the compiled step
    init = tmp_path / "eager" / "ckpt" / "epoch0.pt"
    mask = write_random_mask(init, tmp_path / "mask.pt", keep=0.3)
    sparse = [*data, "--init", init, "--mask", tmp_path / "mask.pt", "--branch", "lth", "--epochs", 1,
              "--batch-size", 64, "--lr", 0.1, "--device", "cpu", "--threads", 1, "--progress", "log"]
    res = _cli("sparse", *sparse, "--compile", "graphs", "--compile-cache", cache, "--out-dir", tmp_path / "s")
    assert res.returncode == 0, res.stderr[-2000:]
    state = load_checkpoint(tmp_path / "s" / "final.pt")["state_dict"]
    assert all(int((state[k][~m] != 0).sum()) == 0 for k, m in mask.items())


@pytest.mark.slow
def test_compile_is_refused_where_it_cannot_apply(tmp_path):
    (tmp_path / "file").write_text("x")
    res = _cli("train", "--dataset", "mnist1d", "--data-dir", tmp_path / "data", "--model", "mlp", "--epochs", 1,
               "--device", "cpu", "--compile", "inductor", "--compile-cache", tmp_path / "file" / "cache",
               "--out-dir", tmp_path / "r")
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1 and "--compile-cache" in lines[0], res.stderr
    res = _cli("fused", "--dataset", "mnist1d", "--data-dir", tmp_path / "data", "--model", "mlp", "--epochs", 1,
               "--device", "cpu", "--compile", "inductor", "--run", f"out_dir={tmp_path / 'f'},seed=1")
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1 and "--compile inductor is for single runs" in lines[0], res.stderr
    assert not (tmp_path / "f").exists() and not (tmp_path / "r").exists()


def test_the_workflow_passes_compile_to_training_steps_only():
    from workflow_plan import plan_of

    from sparsebasin.plan.config import ConfigError

    plan = plan_of(None, compile="graphs", compile_cache="/shared/cache dir", fused=False)
    # the training rules put run_only_args() on their command line, the evaluation rules the training=False
    # ones; neither is a Snakemake param (a rerun trigger) and no job's args carry it
    assert "--compile graphs --compile-cache '/shared/cache dir'" in plan.run_only_args()
    assert "--compile" not in plan.run_only_args(training=False)
    for kind in ("dense", "prune", "sparse", "match", "lmc", "plane"):
        assert "--compile" not in plan.args(next(iter(plan.jobs[kind].values()))), kind
    assert "--compile" not in plan_of(None).run_only_args()
    with pytest.raises(ConfigError, match="compile = 'inductor' with fused: true"):
        plan_of(None, compile="inductor", fused=True)
