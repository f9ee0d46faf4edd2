"""Experiment tracking where researchers look: Weights & Biases, TensorBoard or MLflow, optional and offline-safe.

Each training run (train, every IMP round, sparse, each member of a fused
job) is one tracked run named after its run directory, grouped by its tags
(experiment, dataset, model, width, seed, sparsity, k, branch), with its
resolved configuration, one point per epoch (the row metrics.csv gets) and its
final result; analysis steps log their tables (barriers, diversity,
scorecard) where the backend has tables. The backends are extras
(``pip install -e .[wandb]``, ``[tensorboard]``, ``[mlflow]``).

Tracking never changes a result (it only reads what training produced) and
never fails a run: a missing package, no network, no login or a backend that
raises gives one warning line and the run goes on untracked. It writes only
under its own directory (default ``<out-dir>/tracking``), never into a
declared output. MLflow uses a local file store under that directory (its
file backend needs ``MLFLOW_ALLOW_FILE_STORE``, set here) unless
``MLFLOW_TRACKING_URI`` names a server; W&B ``mode: offline`` writes runs to
sync later with ``wandb sync``.

Every call into a backend (its import, init, each log, finish) runs on the
tracked run's own daemon thread and is awaited for at most ``timeout`` seconds
(``--tracker-timeout``, the workflow's ``tracking.timeout``; default
``DEFAULT_TIMEOUT``): a W&B init that never returns, or a package whose import
hangs, gives one warning and the run goes on untracked, bit for bit as an
untracked run. A call that never returns cannot be stopped in-process, so its
thread is abandoned: it is a daemon thread, the backend is not called again by
this process, and the CLI ends the process with ``os._exit`` after the step
(``abandoned()``), so neither that thread nor an exit hook the backend
registered (W&B's teardown) can hold the finished job at exit.
"""

from __future__ import annotations

import json
import math
import os
import queue
import threading
from pathlib import Path
from typing import Any, Mapping

from .progress import log

BACKENDS = ("none", "wandb", "tensorboard", "mlflow")
MODES = ("online", "offline")
PACKAGE = {"wandb": "wandb", "tensorboard": "tensorboard", "mlflow": "mlflow"}  # module each backend imports
DEFAULT_PROJECT = "sparsebasin"
# Seconds one backend call may take: above W&B's own 90 s init timeout (its message comes first when it has one),
# short enough that a hung tracker costs a job minutes, not its time limit.
DEFAULT_TIMEOUT = 120.0
_HUNG: set[str] = set()  # backends with a call that never returned in this process: never called again


class Hung(Exception):
    """A backend call that did not return within the timeout (its thread is abandoned)."""


class _Worker:
    """A daemon thread that makes one tracked run's backend calls in order; each is awaited at most ``timeout``."""

    def __init__(self, backend: str, timeout: float):
        self.backend, self.timeout = backend, float(timeout)
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._loop, name=f"sparsebasin-tracking-{backend}", daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while True:
            job = self.jobs.get()
            if job is None:
                return
            fn, args, box, done = job
            try:
                box["value"] = fn(*args)
            except SystemExit as exc:  # a backend that exits would end the run: a failure like any other
                box["error"] = RuntimeError(f"the backend called sys.exit({exc.code!r})")
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                box["error"] = exc
            done.set()

    def call(self, fn, *args):
        box: dict = {}
        done = threading.Event()
        self.jobs.put((fn, args, box, done))
        if not done.wait(self.timeout):
            _HUNG.add(self.backend)
            raise Hung(f"no answer within {self.timeout:g} s")
        if "error" in box:
            raise box["error"]
        return box.get("value")

    def close(self) -> None:
        self.jobs.put(None)


def abandoned() -> bool:
    """Whether a backend call never returned in this process (its thread still runs: end with os._exit)."""
    return bool(_HUNG)


def missing_package(backend: str) -> str | None:
    """The one line to say when ``backend``'s package is not installed, else None."""
    import importlib.util

    if backend == "none" or importlib.util.find_spec(PACKAGE[backend]) is not None:
        return None
    return (f"--tracker {backend} needs the {backend} extra: pip install -e '.[{backend}]' "
            f"(or pip install {'mlflow-skinny' if backend == 'mlflow' else backend})")


def run_label(name: str) -> str:
    """A run's tracked name: its directory as a relative path (TensorBoard nests it under the tracking dir)."""
    parts = [p for p in Path(str(name)).parts if p not in ("/", "..", ".")]
    if parts and parts[0] == "results":
        parts = parts[1:]
    return "/".join(parts) or "run"


def _scalars(d: Mapping) -> dict[str, float]:
    out = {}
    for k, v in d.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        if math.isfinite(float(v)):
            out[k] = float(v)
    return out


def _flat(d: Mapping, prefix: str = "") -> dict[str, str]:
    """A nested configuration as dotted keys -> short strings (MLflow params, TensorBoard text)."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(_flat(v, key + "."))
        else:
            out[key] = json.dumps(v, default=str)[:500]
    return out


def _hung_warning(backend: str, name: str, what: str, timeout: float) -> str:
    return (f"warning: tracking ({backend}) of {name} hung at {what}: no return within {timeout:g} s "
            f"(--tracker-timeout, tracking.timeout); the run goes on untracked and {backend} is not called again")


class Tracker:
    """A tracked run that turns every backend failure into one warning line, then stops tracking.

    Backends override ``_open`` (import and init) and the ``_epoch``... methods; they run on ``self.worker``.
    """

    def __init__(self, backend: str, name: str, timeout: float | None = None):
        self.backend, self.name, self.broken = backend, name, backend == "none"
        self.timeout = DEFAULT_TIMEOUT if timeout is None else float(timeout)
        self.worker: _Worker | None = None

    def _call(self, fn, *args):
        if self.worker is None:
            self.worker = _Worker(self.backend, self.timeout)
        return self.worker.call(fn, *args)

    def _guard(self, what: str, fn, *args) -> None:
        if self.broken:
            return
        try:
            self._call(fn, *args)
        except Hung:
            self.broken = True
            log(_hung_warning(self.backend, self.name, what, self.timeout))
        except Exception as exc:  # noqa: BLE001 - tracking must never fail a run
            self.broken = True
            log(f"warning: tracking ({self.backend}) of {self.name} stopped at {what}: "
                f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}; the run goes on")

    def epoch(self, row: Mapping, step: int) -> None:
        self._guard("an epoch", self._epoch, _scalars(row), int(step))

    def result(self, result: Mapping) -> None:
        self._guard("the result", self._result, _scalars(result))

    def table(self, name: str, rows: list[dict]) -> None:
        self._guard(f"table {name}", self._table, name, rows)

    def finish(self) -> None:
        self._guard("finish", self._finish)
        self.broken = True
        if self.worker is not None and self.backend not in _HUNG:
            self.worker.close()

    # backends override these
    def _open(self, tags: dict, config: dict, project: str, mode: str, directory: Path) -> None: ...
    def _epoch(self, metrics: dict, step: int) -> None: ...
    def _result(self, metrics: dict) -> None: ...
    def _table(self, name: str, rows: list[dict]) -> None: ...
    def _finish(self) -> None: ...


class _WandB(Tracker):
    def _open(self, tags, config, project, mode, directory):
        os.environ.setdefault("WANDB_SILENT", "true")
        import wandb

        Path(directory).mkdir(parents=True, exist_ok=True)
        group = "/".join(str(tags[k]) for k in ("experiment", "dataset", "model", "width") if k in tags) or None
        self.run = wandb.init(project=project, dir=str(directory), mode=mode, name=self.name, group=group,
                              tags=[f"{k}={v}" for k, v in tags.items()][:64], config={**config, "tags": dict(tags)},
                              reinit="create_new")

    def _epoch(self, metrics, step):
        self.run.log(metrics, step=step)

    def _result(self, metrics):
        self.run.summary.update({f"final/{k}": v for k, v in metrics.items()})

    def _table(self, name, rows):
        import wandb

        cols = list(dict.fromkeys(k for r in rows for k in r))
        self.run.log({name: wandb.Table(columns=cols, data=[[r.get(c) for c in cols] for r in rows])})

    def _finish(self):
        self.run.finish()


class _TensorBoard(Tracker):
    def _open(self, tags, config, project, mode, directory):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(Path(directory) / project / self.name))
        self.writer.add_text("config", "```\n" + json.dumps({**config, "tags": dict(tags)}, indent=1, default=str)
                             + "\n```")
        self.tags = dict(tags)

    def _epoch(self, metrics, step):
        for k, v in metrics.items():
            self.writer.add_scalar(k, v, step)

    def _result(self, metrics):
        for k, v in metrics.items():
            self.writer.add_scalar(f"final/{k}", v, 0)
        self.writer.add_hparams({k: str(v) for k, v in self.tags.items()}, {f"hparam/{k}": v for k, v in metrics.items()},
                                run_name="hparams")

    def _table(self, name, rows):
        cols = list(dict.fromkeys(k for r in rows for k in r))
        lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        lines += ["| " + " | ".join(str(r.get(c, "")) for c in cols) + " |" for r in rows]
        self.writer.add_text(name, "\n".join(lines))

    def _finish(self):
        self.writer.close()


class _MLflow(Tracker):
    def _open(self, tags, config, project, mode, directory):
        from mlflow.tracking import MlflowClient

        uri = os.environ.get("MLFLOW_TRACKING_URI")
        if not uri:
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # a local store: MLflow's file backend
            uri = (Path(directory) / "mlruns").resolve().as_uri()
        self.client = MlflowClient(tracking_uri=uri)
        exp = self.client.get_experiment_by_name(project)
        exp_id = exp.experiment_id if exp is not None else _create_experiment(self.client, project)
        self.run_id = self.client.create_run(exp_id, run_name=self.name, tags={k: str(v) for k, v in tags.items()}).info.run_id
        for k, v in list(_flat(config).items())[:500]:
            self.client.log_param(self.run_id, k, v)

    def _epoch(self, metrics, step):
        for k, v in metrics.items():
            self.client.log_metric(self.run_id, k, v, step=step)

    def _result(self, metrics):
        for k, v in metrics.items():
            self.client.log_metric(self.run_id, f"final_{k}", v)

    def _table(self, name, rows):
        self.client.log_text(self.run_id, json.dumps(rows, indent=1, default=str), f"tables/{name}.json")

    def _finish(self):
        self.client.set_terminated(self.run_id)


def _create_experiment(client, name: str) -> str:
    try:
        return client.create_experiment(name)
    except Exception:  # noqa: BLE001 - another job created it at the same moment
        return client.get_experiment_by_name(name).experiment_id


_CLASSES = {"wandb": _WandB, "tensorboard": _TensorBoard, "mlflow": _MLflow}


def start(backend: str, name: str, *, tags: Mapping | None = None, config: Mapping | None = None,
          project: str | None = None, mode: str = "offline", directory: str | Path = "tracking",
          timeout: float | None = None) -> Tracker:
    """A tracked run, or an inert one (``backend`` none, its package missing, the backend failing or hanging at
    import or init: one line; a backend that hung before in this process: silently, it was said then)."""
    if backend == "none" or backend in _HUNG:
        return Tracker("none", name)
    name = run_label(name)
    missing = missing_package(backend)
    if missing:
        log(f"warning: {missing}; {name} is not tracked")
        return Tracker(backend, name)
    tracker = _CLASSES[backend](backend, name, timeout)
    try:
        tracker._call(tracker._open, dict(tags or {}), dict(config or {}), project or DEFAULT_PROJECT, mode,
                      Path(directory))
        return tracker
    except Hung:
        log(_hung_warning(backend, name, "its import and init", tracker.timeout))
    except Exception as exc:  # noqa: BLE001 - no network, no login, a broken install: the run goes on
        log(f"warning: tracking ({backend}) of {name} could not start: {type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:200] if str(exc) else ''}; the run goes on untracked")
        tracker.worker.close()
    return Tracker(backend, name)


# the process's tracking settings, set by the steps' --tracker options (like --deterministic)
_SETTINGS = {"backend": "none", "project": None, "mode": "offline", "dir": None, "timeout": None}


def configure(backend: str, directory: str | Path | None, project: str | None, mode: str,
              timeout: float | None = None) -> None:
    _SETTINGS.update(backend=backend, dir=directory, project=project, mode=mode, timeout=timeout)
    if backend != "none":
        missing = missing_package(backend)
        if missing:
            log(f"warning: {missing}; this step is not tracked")


def for_run(name: str, out_dir: str | Path, tags: Mapping, config: Mapping) -> Tracker:
    """The tracked run of one training run under the process's settings (default dir ``<out-dir>/tracking``)."""
    s = _SETTINGS
    if s["backend"] == "none":
        return Tracker("none", name)
    return start(s["backend"], name, tags=tags, config=config, project=s["project"], mode=s["mode"],
                 directory=s["dir"] or Path(out_dir) / "tracking", timeout=s["timeout"])


__all__ = ["BACKENDS", "DEFAULT_TIMEOUT", "MODES", "Tracker", "abandoned", "configure", "for_run", "missing_package",
           "start"]
