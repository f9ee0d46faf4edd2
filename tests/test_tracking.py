"""Experiment tracking (sparsebasin.tracking) with each backend offline: the logged values are metrics.csv's,
results are unchanged, a broken or missing backend is one warning and the run goes on."""

from __future__ import annotations

import csv
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sparsebasin.checkpoints import load_checkpoint

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]


def _train(tmp, out, *extra, env=None):
    argv = [sys.executable, "-m", "sparsebasin", "train", "--dataset", "mnist1d", "--data-dir", str(tmp / "data"),
            "--train-subset", "512", "--model", "mlp", "--hidden", "16", "--epochs", "3", "--batch-size", "64",
            "--lr", "0.1", "--device", "cpu", "--threads", "1", "--progress", "log", "--seed", "1",
            "--tag", "experiment=t", "--tag", "branch=lth", "--out-dir", str(out), *map(str, extra)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})})


def _metrics(run_dir: Path) -> list[dict]:
    with open(run_dir / "metrics.csv") as fh:
        return list(csv.DictReader(fh))


def _wandb_records(path: Path):
    """The records of a W&B offline run file (its LevelDB-style log: 7-byte header, 32 KiB blocks)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, chunks = 7, 32768, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        payload = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        chunks += payload
        if kind in (1, 4):  # full, last
            rec = pb.Record()
            rec.ParseFromString(chunks)
            chunks = b""
            yield rec


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("untracked")
    res = _train(tmp, tmp / "run")
    assert res.returncode == 0, res.stderr[-2000:]
    return tmp, tmp / "run"


def _same_run(a: Path, b: Path) -> None:
    x, y = load_checkpoint(a / "final.pt")["state_dict"], load_checkpoint(b / "final.pt")["state_dict"]
    assert all(torch.equal(x[k], y[k]) for k in x)  # tracking never changes a result
    assert sorted(p.name for p in a.iterdir()) == sorted(p.name for p in b.iterdir())  # nothing in the run dir


def test_tensorboard_offline_logs_metrics_csv(baseline, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tmp, ref = baseline
    res = _train(tmp, tmp_path / "run", "--tracker", "tensorboard", "--tracker-dir", tmp_path / "tb")
    assert res.returncode == 0 and "warning" not in res.stderr, res.stderr[-2000:]
    _same_run(ref, tmp_path / "run")
    (logdir,) = {e.parent for e in (tmp_path / "tb" / "sparsebasin").rglob("events.out.tfevents.*")
                 if e.parent.name != "hparams"}
    assert logdir.name == "run" and tmp_path / "tb" in logdir.parents  # the run's directory, under the tracking dir
    acc = EventAccumulator(str(logdir))
    acc.Reload()
    rows = _metrics(tmp_path / "run")
    for key in ("train_loss", "test_acc", "lr"):
        got = [(e.step, e.value) for e in acc.Scalars(key)]
        assert got == [(int(r["epoch"]), pytest.approx(float(r[key]), rel=1e-6)) for r in rows]
    assert "test_acc" in str(acc.Tags())


def test_mlflow_local_store_logs_metrics_tags_and_params(baseline, tmp_path):
    from mlflow.tracking import MlflowClient

    tmp, ref = baseline
    res = _train(tmp, tmp_path / "run", "--tracker", "mlflow", "--tracker-dir", tmp_path / "ml",
                 "--tracker-project", "proj", env={"MLFLOW_TRACKING_URI": ""})
    assert res.returncode == 0 and "warning" not in res.stderr, res.stderr[-2000:]
    _same_run(ref, tmp_path / "run")
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    client = MlflowClient(tracking_uri=(tmp_path / "ml" / "mlruns").resolve().as_uri())
    exp = client.get_experiment_by_name("proj")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.data.tags["experiment"] == "t" and run.data.tags["branch"] == "lth"
    assert run.info.run_name.endswith("/run") and not run.info.run_name.startswith("/") and any(k.startswith("config.") for k in run.data.params)
    rows = _metrics(tmp_path / "run")
    hist = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, "test_loss"))
    assert hist == [(int(r["epoch"]), pytest.approx(float(r["test_loss"]), rel=1e-9)) for r in rows]
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert run.data.metrics["final_test_acc"] == pytest.approx(result["test_acc"])


def test_wandb_offline_logs_metrics_csv(baseline, tmp_path):
    tmp, ref = baseline
    res = _train(tmp, tmp_path / "run", "--tracker", "wandb", "--tracker-dir", tmp_path / "wb",
                 env={"WANDB_MODE": "offline"})
    assert res.returncode == 0 and "warning" not in res.stderr, res.stderr[-2000:]
    _same_run(ref, tmp_path / "run")
    (file,) = (tmp_path / "wb" / "wandb").glob("offline-run-*/run-*.wandb")
    history, config = [], {}
    for rec in _wandb_records(file):
        kind = rec.WhichOneof("record_type")
        if kind == "history":
            history.append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in rec.history.item})
        elif kind == "run":
            config.update({i.key: json.loads(i.value_json) for i in rec.run.config.update})
    rows = _metrics(tmp_path / "run")
    assert [h["test_acc"] for h in history] == [pytest.approx(float(r["test_acc"])) for r in rows]
    assert config["tags"]["experiment"] == "t"


def test_a_broken_or_missing_backend_is_one_warning_and_the_run_goes_on(baseline, tmp_path):
    tmp, ref = baseline
    broken = tmp_path / "site"
    (broken / "mlflow").mkdir(parents=True)
    (broken / "mlflow" / "__init__.py").write_text("raise RuntimeError('no network')\n")
    res = _train(tmp, tmp_path / "run", "--tracker", "mlflow", "--tracker-dir", tmp_path / "ml",
                 env={"PYTHONPATH": os.pathsep.join([str(broken), os.environ.get("PYTHONPATH", "")])})
    warnings = [line for line in res.stderr.splitlines() if "warning" in line]
    assert res.returncode == 0 and len(warnings) == 1 and "could not start" in warnings[0], res.stderr[-2000:]
    _same_run(ref, tmp_path / "run")

    from sparsebasin import tracking

    assert tracking.missing_package("none") is None
    saved = dict(tracking.PACKAGE)
    try:
        tracking.PACKAGE["wandb"] = "no_such_package_here"
        assert "pip install -e '.[wandb]'" in tracking.missing_package("wandb")
        t = tracking.start("wandb", "x", directory=tmp_path)
        t.epoch({"loss": 1.0}, 1)
        t.finish()  # inert: nothing raised
    finally:
        tracking.PACKAGE.update(saved)


def test_the_workflow_passes_tracking_to_training_and_the_scorecard():
    from workflow_plan import plan_of

    from sparsebasin.plan import reports

    plan = plan_of(None, tracking={"backend": "tensorboard", "dir": "results/tb"})
    # training rules and the scorecard put these on their command line outside Snakemake's params (a rerun
    # trigger): tracking never changes a result, so turning it on reruns nothing (issue 27, item 4)
    assert "--tracker tensorboard --tracker-dir results/tb" in plan.run_only_args()
    assert "--tracker tensorboard --tracker-dir results/tb" in plan.tracker_args()
    assert "--tracker" not in plan.run_only_args(training=False)
    for kind in ("dense", "prune", "sparse", "match"):
        assert "--tracker" not in plan.args(next(iter(plan.jobs[kind].values()))), kind
    exp = next(iter(plan.config["experiments"]))
    assert "--tracker" not in reports.scorecard_extra(plan, exp)
    assert "--tracker" not in plan_of(None).run_only_args()
