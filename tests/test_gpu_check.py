"""benchmarks/gpu_check.py on CPU (--quick): every device path it exercises on a GPU runs here too, so it cannot rot."""

from __future__ import annotations

import pytest

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_check_passes_on_cpu(tmp_path):
    out = tmp_path / "throughput.json"
    res = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--device", "cpu", "--quick",
                          "--threads", "1", "--throughput", str(out)],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    lines = res.stdout.splitlines()
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    verdicts = {line.split(":", 1)[0].split(" ", 1)[1]: line.split(" ", 1)[0] for line in lines
                if line.split(" ", 1)[0] in ("PASS", "FAIL", "SKIP")}
    for check in ("dense training", "bf16 vs fp32", "deterministic reruns", "prune (IMP-FT)", "match", "sparse branches", "fused = separate",
                  "interpolate, every mode", "plane", "ensemble", "host waits per step", "compile inductor",
                  "resume across a GPU-count change", "data-parallel"):
        assert verdicts.get(check) == "PASS", (check, res.stdout[-3000:])
    assert "FAIL" not in verdicts.values()
    assert lines[-1].startswith(f"{sum(v == 'PASS' for v in verdicts.values())} passed, 0 failed"), lines[-1]
    payload = json.loads(out.read_text())
    assert payload["device"] == "cpu" and set(payload["models"]) == {"resnet20", "vgg11"}
    assert payload["widths"]["1"]["ours_images_per_s"][0] > 0  # the layout bench_grid_cost.py reads


def _audit_engine(tmp_path, steps):
    import torch

    from sparsebasin.data import dataset_info
    from sparsebasin.data.base import ArrayDataset
    from sparsebasin.models import build_model
    from sparsebasin.training import TrainConfig
    from sparsebasin.training.engines import SingleEngine
    from sparsebasin.training.schedule import make_schedule
    from sparsebasin.training.session import Member

    g = torch.Generator().manual_seed(0)
    ds = ArrayDataset(dataset_info("cifar10"), torch.randint(0, 256, (4 * steps, 3, 8, 8), generator=g,
                                                             dtype=torch.uint8), torch.randint(0, 10, (4 * steps,)))
    cfg = TrainConfig(epochs=1, lr=0.01, batch_size=4)
    torch.manual_seed(0)
    engine = SingleEngine(Member(build_model({"name": "resnet20", "width": 1}, 10, 3), tmp_path, "a"), cfg,
                          torch.device("cpu"), ds, True, False)
    return engine, make_schedule(cfg, engine.optimizer, steps)


def test_host_wait_audit_passes_the_training_step_and_catches_per_step_host_work(tmp_path):
    """The audit gpu_check runs: the real step passes; a step that draws crops per batch on the host
    (as data/base.py did), builds mean/std per batch or reads the loss each step fails."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import gpu_check
    finally:
        sys.path.pop(0)
    from sparsebasin.data import base

    steps = 26
    engine, schedule = _audit_engine(tmp_path, steps)
    ok = gpu_check.audit_steps(engine, schedule, steps, ["a"])
    assert ok["waits"] <= ok["allowed"] == 2, ok

    def per_batch_host_draws(epoch):  # the old iterator: offsets and flips drawn per batch on the CPU generator
        ds, gen = engine.train_ds, base.epoch_generator(0, epoch)
        order = torch.randperm(len(ds), generator=gen)
        for s in range(0, len(ds), 4):
            xb = base.random_crop_flip(ds.x[order[s:s + 4]], 4, gen)
            yield base.normalise(xb, ds.info), ds.y[order[s:s + 4]]

    import torch

    engine, schedule = _audit_engine(tmp_path, steps)
    engine.batches = per_batch_host_draws
    bad = gpu_check.audit_steps(engine, schedule, steps, ["a"])
    assert bad["waits"] > bad["allowed"] and bad["counts"]["randint"] == 2 * (steps - 1), bad

    engine, schedule = _audit_engine(tmp_path, steps)
    step = engine.step

    def reads_loss(x, y):
        out = step(x, y)
        float(out[0][0])
        return out

    engine.step = reads_loss
    bad = gpu_check.audit_steps(engine, schedule, steps, ["a"])
    assert bad["counts"].get("_local_scalar_dense", 0) == steps - 1, bad

    fresh = base._mean_std.__wrapped__
    base._mean_std.cache_clear()
    try:
        base._mean_std = fresh  # uncached: a tensor from Python numbers in every batch
        engine, schedule = _audit_engine(tmp_path, steps)
        bad = gpu_check.audit_steps(engine, schedule, steps, ["a"])
    finally:
        import functools
        base._mean_std = functools.lru_cache(maxsize=64)(fresh)
    assert bad["counts"].get("lift_fresh", 0) >= steps - 1, bad
