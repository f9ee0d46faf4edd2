"""A tracker that never answers cannot hold a run (sparsebasin.tracking): planted backend packages that hang at
import, at init, at a log call, and one that also leaves a non-daemon thread and an exit hook that never return
(as a real backend's service would). Each run warns once, goes on untracked with the weights of an untracked run,
and its process ends."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from sparsebasin.checkpoints import load_checkpoint
from sparsebasin.health import LABEL

TIMEOUT = 2  # --tracker-timeout of the runs here

HANG = "import time\nwhile True:\n    time.sleep(1)\n"
PLANTS = {
    # module code of a package that never finishes importing
    "import": {"wandb": HANG, "mlflow": HANG, "tensorboard": HANG},
    # W&B whose init never returns, after registering an exit hook and a non-daemon thread that never end
    "init": {"wandb": (
        "import atexit, threading, time\n"
        "def _forever():\n    while True:\n        time.sleep(1)\n"
        "def init(**kwargs):\n"
        "    atexit.register(_forever)\n"
        "    threading.Thread(target=_forever, daemon=False).start()\n"
        "    _forever()\n")},
    # W&B whose init answers and whose first log never returns
    "log": {"wandb": (
        "import time\n"
        "class _Run:\n"
        "    summary = {}\n"
        "    def log(self, *a, **k):\n        while True:\n            time.sleep(1)\n"
        "    def finish(self):\n        pass\n"
        "def init(**kwargs):\n    return _Run()\n")},
}


def _plant(root: Path, where: str) -> Path:
    for package, code in PLANTS[where].items():
        (root / package).mkdir(parents=True, exist_ok=True)
        (root / package / "__init__.py").write_text(code, encoding="utf-8")
    return root


def _env(plants: Path | None = None) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline"}
    if plants is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(plants), env.get("PYTHONPATH", "")])
    return env


def _train(data: Path, out: Path, *extra, env=None, timeout=240):
    argv = [sys.executable, "-m", "sparsebasin", "train", "--dataset", "mnist1d", "--data-dir", str(data),
            "--train-subset", "256", "--model", "mlp", "--hidden", "16", "--epochs", "2", "--batch-size", "64",
            "--lr", "0.1", "--device", "cpu", "--threads", "1", "--progress", "log", "--seed", "3",
            "--out-dir", str(out), *map(str, extra)]
    t0 = time.monotonic()
    res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env or _env())
    return res, time.monotonic() - t0


@pytest.fixture(scope="module")
def untracked(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("untracked")
    res, _ = _train(tmp / "data", tmp / "run")
    assert res.returncode == 0, res.stderr[-2000:]
    return tmp / "data", tmp / "run"


def _same_weights(a: Path, b: Path) -> None:
    x, y = load_checkpoint(a / "final.pt")["state_dict"], load_checkpoint(b / "final.pt")["state_dict"]
    assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)
    assert sorted(p.name for p in a.iterdir()) == sorted(p.name for p in b.iterdir())


def _one_warning(stderr: str, *words: str) -> str:
    health = tuple(LABEL.values())  # a tiny run's health flag (dead at chance) is another warning, not ours
    warnings = [line for line in stderr.splitlines() if "warning" in line
                and not any(h in line for h in health) and "comes from a run marked" not in line]
    assert len(warnings) == 1, stderr[-3000:]
    for w in words:
        assert w in warnings[0], warnings[0]
    return warnings[0]


@pytest.mark.parametrize("backend", ["wandb", pytest.param("mlflow", marks=pytest.mark.slow),
                                     pytest.param("tensorboard", marks=pytest.mark.slow)])
@pytest.mark.slow
def test_a_backend_that_hangs_at_import_is_one_warning(untracked, tmp_path, backend):
    data, ref = untracked
    res, seconds = _train(data, tmp_path / "run", "--tracker", backend, "--tracker-timeout", TIMEOUT,
                          "--tracker-dir", tmp_path / "t", env=_env(_plant(tmp_path / "site", "import")))
    assert res.returncode == 0, res.stderr[-3000:]
    _one_warning(res.stderr, f"tracking ({backend})", "hung at its import and init", f"{TIMEOUT} s", "untracked")
    _same_weights(ref, tmp_path / "run")
    assert seconds < 120


@pytest.mark.slow
def test_an_init_that_never_returns_and_leaves_threads_and_exit_hooks(untracked, tmp_path):
    data, ref = untracked
    res, seconds = _train(data, tmp_path / "run", "--tracker", "wandb", "--tracker-timeout", TIMEOUT,
                          "--tracker-dir", tmp_path / "t", env=_env(_plant(tmp_path / "site", "init")), timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]  # ended although a non-daemon thread and an exit hook never do
    _one_warning(res.stderr, "hung at its import and init")
    _same_weights(ref, tmp_path / "run")


@pytest.mark.slow
def test_a_log_call_that_never_returns(untracked, tmp_path):
    data, ref = untracked
    res, _ = _train(data, tmp_path / "run", "--tracker", "wandb", "--tracker-timeout", TIMEOUT,
                    "--tracker-dir", tmp_path / "t", env=_env(_plant(tmp_path / "site", "log")))
    assert res.returncode == 0, res.stderr[-3000:]
    _one_warning(res.stderr, "hung at an epoch")
    assert res.stderr.count("epoch 2/2") == 1  # training went on after the hung call
    _same_weights(ref, tmp_path / "run")


@pytest.mark.slow
def test_a_step_with_many_tracked_runs_waits_once(untracked, tmp_path):
    """IMP tracks every round as its own run: after the first hang the backend is not called again."""
    data, ref = untracked
    argv = [sys.executable, "-m", "sparsebasin", "prune", "--checkpoint", str(ref / "final.pt"), "--targets",
            "0.5,0.75", "--rate", "0.5", "--ft-preset", "mnist1d_imp_ft", "--ft-epochs", "1", "--ft-batch-size", "64",
            "--dataset", "mnist1d", "--data-dir", str(data), "--train-subset", "256", "--seed", "3", "--device",
            "cpu", "--threads", "1", "--progress", "log", "--out-dir", str(tmp_path / "prune"),
            "--tracker", "mlflow", "--tracker-timeout", str(TIMEOUT)]
    t0 = time.monotonic()
    res = subprocess.run(argv, capture_output=True, text=True, timeout=240,
                         env=_env(_plant(tmp_path / "site", "import")))
    assert res.returncode == 0, res.stderr[-3000:]
    _one_warning(res.stderr, "hung at its import and init")
    assert (tmp_path / "prune" / "S0.75" / "mask.pt").is_file()
    assert time.monotonic() - t0 < 120


def test_the_workflow_passes_its_tracking_timeout():
    from workflow_plan import plan_of

    plan = plan_of(None, tracking={"backend": "wandb", "timeout": 30})
    assert "--tracker wandb" in plan.run_only_args()  # outside Snakemake's params: tracking reruns nothing
    assert plan.run_only_args().count("--tracker-timeout 30") == 1
    default = plan_of(None, tracking={"backend": "wandb"})
    assert "--tracker-timeout" not in default.run_only_args()  # the library's
