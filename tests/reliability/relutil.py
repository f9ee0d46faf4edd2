"""Helpers of the reliability suite: small data, the fork-server client, output checks."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from sparsebasin import checkpoints
from sparsebasin import io as sio
from sparsebasin.data import mnist1d

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
LAUNCH = HERE / "_launch.py"
N_TRAIN, N_TEST = 600, 200


# A tiny configuration of the real workflow (MNIST-1D MLP, one width, one seed, one sparsity, k = 0):
# dense A and B, IMP-FT (slow enough per round to be caught mid-round), the sparse branches.
WORKFLOW_CONFIG = {
    "device": "cpu",
    "threads": 1,
    "experiments": {
        "rel": {
            "cells": [{
                "dataset": "mnist1d",
                "model": "mlp",
                "model_args": {"depth": 1, "hidden": 16},
                "widths": [1],
                "seeds": [0],
                "dense": {"epochs": 2, "lr": 0.05, "momentum": 0.9, "weight_decay": 0.0005, "batch_size": 64},
                "sparse": {"lr": 0.05},
                "prune": {"rate": 0.5, "ft_epochs": 6, "ft_lr": 0.01, "ft_batch_size": 4},
                "match": {"batches": 2, "batch_size": 128},
                "sweep": {"sparsities": [0.5], "rewind": [0]},
            }],
        }
    },
}


# ---------------------------------------------------------------- data --

def write_mnist1d_cache(root: Path, obj: dict) -> Path:
    """Write ``obj`` under MNIST-1D's default cache name with a matching checksum sidecar."""
    return mnist1d.write_cache(root, obj)


def small_mnist1d(root: Path) -> Path:
    """A real (generated) 600/200 MNIST-1D set under the default cache name: fast to load."""
    write_mnist1d_cache(root, mnist1d.generate(mnist1d.MNIST1DConfig(n_train=N_TRAIN, n_test=N_TEST, seed=0)))
    return root


# ------------------------------------------------------- fork server --

class ForkServer:
    """Client of ``_launch.py serve``: run step CLIs in forked children, one at a time."""

    def __init__(self, env: dict):
        self.proc = subprocess.Popen([sys.executable, str(LAUNCH), "serve"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=env, cwd=str(REPO))
        self.n = 0

    def start(self, req: dict) -> int:
        """Send a request; return the child's pid (call ``wait`` next)."""
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("fork server died")
        return int(json.loads(line)["pid"])

    def wait(self) -> int:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("fork server died")
        return int(json.loads(line)["status"])

    def run(self, argv: list[str], workdir: Path, *, actions: dict | None = None, slow: float = 0.0,
            root: Path | None = None, on_start=None) -> "Run":
        """Run one step CLI; ``on_start(pid, run)`` may kill it. Returns the finished Run."""
        self.n += 1
        tag = f"run{self.n:03d}"
        logs = workdir / "_logs"
        logs.mkdir(parents=True, exist_ok=True)
        run = Run(argv=list(argv), stdout=logs / f"{tag}.out", stderr=logs / f"{tag}.err",
                  events=logs / f"{tag}.events")
        req = {"argv": run.argv, "cwd": str(workdir), "stdout": str(run.stdout), "stderr": str(run.stderr),
               "events": str(run.events), "root": str(root or workdir), "actions": actions or {}, "slow": slow}
        run.pid = self.start(req)
        try:
            if on_start is not None:
                on_start(run.pid, run)
        except BaseException:
            # keep the server in step for the next test: end this child, read its status
            with contextlib.suppress(ProcessLookupError):
                os.kill(run.pid, signal.SIGKILL)
            self.wait()
            raise
        run.status = self.wait()
        return run

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Run:
    def __init__(self, argv, stdout, stderr, events):
        self.argv, self.stdout, self.stderr, self.events = argv, stdout, stderr, events
        self.pid = None
        self.status = None

    @property
    def err(self) -> str:
        return self.stderr.read_text() if self.stderr.exists() else ""

    def event_labels(self, kind: str = "end") -> list[str]:
        if not self.events.exists():
            return []
        out = []
        for line in self.events.read_text().splitlines():
            k, label, _ = line.split(" ")
            if k == kind:
                out.append(label)
        return out


def wait_for_event(run: Run, label: str, timeout: float = 120, pid: int | None = None) -> bool:
    """Poll the run's event log until ``end LABEL`` shows up (False if the child died first)."""
    deadline = time.monotonic() + timeout
    needle = f"end {label} "
    while time.monotonic() < deadline:
        if run.events.exists() and needle in run.events.read_text():
            return True
        if pid is not None and not _alive(pid):
            return False
        time.sleep(0.003)
    raise TimeoutError(f"event {label} did not happen within {timeout}s")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


def wait_stopped(pid: int, timeout: float = 120) -> None:
    """Wait until ``pid`` is in state T (stopped by SIGSTOP)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(f"/proc/{pid}/stat") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
        if state == "T":
            return
        if state in ("Z", "X"):
            raise RuntimeError(f"process {pid} exited instead of stopping")
        time.sleep(0.005)
    raise TimeoutError(f"process {pid} did not stop")


# ------------------------------------------------------- output checks --

def is_tmp(path: Path) -> bool:
    """A temporary of io.atomic_path: ``.<name>.<random>.tmp`` beside the output."""
    return path.name.startswith(".") and path.name.endswith(".tmp")


def check_loads(path: Path) -> str:
    """Load one output file the way its consumer would; return its kind or raise AssertionError."""
    name = path.name
    try:
        if name == ".resume.pt":
            sio.load_artifact(path, "resume")
            return "resume"
        if name.endswith(".pt"):
            obj = torch.load(path, map_location="cpu", weights_only=False)
            fmt = obj.get("format") if isinstance(obj, dict) else None
            kind = {v: k for k, v in sio.FORMATS.items()}.get(fmt)
            assert kind is not None, f"{path}: unknown format {fmt!r}"
            if kind == "checkpoint":
                checkpoints.model_from_checkpoint(path)
            elif kind == "mask":
                ckpt_like = checkpoints.load_mask(path)
                model = checkpoints.build_from_meta(ckpt_like["model"], ckpt_like["data"])
                checkpoints.check_mask(ckpt_like["mask"], model, str(path))
            elif kind == "predictions":
                assert obj["logits"].shape[0] == obj["labels"].shape[0]
            return kind
        if name.endswith(".json"):
            json.loads(path.read_text())
            return "json"
        if name.endswith(".csv"):
            rows = list(csv.reader(path.read_text().splitlines()))
            assert rows and all(len(r) == len(rows[0]) for r in rows), f"{path}: ragged CSV"
            return "csv"
    except AssertionError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise AssertionError(f"{path} does not load cleanly: {type(exc).__name__}: {exc}") from exc
    raise AssertionError(f"unexpected file {path}")


def check_tree(out: Path) -> dict:
    """Every file under ``out`` loads cleanly, except io temporaries (never under a declared name).

    Returns {relative path: kind} of the files that are not temporaries.
    """
    kinds = {}
    if not out.exists():
        return kinds
    for p in sorted(out.rglob("*")):
        if p.is_dir():
            continue
        rel = p.relative_to(out).as_posix()
        if rel.startswith("_logs/"):
            continue
        if is_tmp(p) or p.name == ".lock":  # a killed writer's lock file: taken over by the next writer
            continue
        kinds[rel] = check_loads(p)
    return kinds


def tensors_of(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a .pt output, flattened to {dotted key: tensor}; provenance is ignored."""
    obj = torch.load(path, map_location="cpu", weights_only=False)
    out = {}

    def walk(prefix, value):
        if isinstance(value, torch.Tensor):
            out[prefix] = value
        elif isinstance(value, dict):
            for k, v in value.items():
                if prefix == "" and k == "provenance":
                    continue
                walk(f"{prefix}.{k}" if prefix else str(k), v)

    walk("", obj)
    return out


def assert_same_outputs(ref: Path, got: Path) -> int:
    """Same set of output files; every tensor of every .pt torch.equal; metrics/results equal
    up to timing columns. Returns the number of tensors compared."""
    def listing(d):
        return sorted(p.relative_to(d).as_posix() for p in d.rglob("*")
                      if p.is_file() and not is_tmp(p) and not p.relative_to(d).as_posix().startswith("_logs/"))

    assert listing(ref) == listing(got), (listing(ref), listing(got))
    n = 0
    for rel in listing(ref):
        a, b = ref / rel, got / rel
        if rel.endswith(".pt"):
            ta, tb = tensors_of(a), tensors_of(b)
            assert ta.keys() == tb.keys(), rel
            assert ta, f"{rel} holds no tensors"
            for k in ta:
                assert ta[k].dtype == tb[k].dtype and torch.equal(ta[k], tb[k]), f"{rel}: {k} differs"
                n += 1
        elif rel.endswith("metrics.csv"):
            strip = [r.split(",")[:7] for r in a.read_text().splitlines()]
            assert strip == [r.split(",")[:7] for r in b.read_text().splitlines()], rel
        elif rel.endswith("result.json"):
            ja, jb = json.loads(a.read_text()), json.loads(b.read_text())
            for key in ("test_acc", "test_loss", "test_top5", "train_loss", "epochs", "density"):
                assert ja.get(key) == jb.get(key), (rel, key, ja.get(key), jb.get(key))
    return n


def file_signature(p: Path) -> tuple:
    st = p.stat()
    return (st.st_size, st.st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())


def snapshot(*dirs: Path) -> dict[str, tuple]:
    """{path: (size, mtime_ns, sha256)} of every file (and {dir: 'dir'} of every directory)."""
    snap = {}
    for d in dirs:
        if not d.exists():
            continue
        for p in sorted(d.rglob("*")):
            if p.is_dir():
                snap[str(p)] = ("dir",)
            else:
                snap[str(p)] = file_signature(p)
    return snap


def diff_snapshots(before: dict, after: dict) -> list[str]:
    out = [f"new {p}" for p in after if p not in before]
    out += [f"removed {p}" for p in before if p not in after]
    out += [f"changed {p}" for p in before if p in after and before[p] != after[p]]
    return sorted(out)


def error_lines(stderr: str) -> list[str]:
    """Lines of stderr that are not the trainer's progress log lines."""
    return [line for line in stderr.splitlines() if line.strip() and not line.startswith("[sparsebasin]")]


def env_with_venv() -> dict:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("OMP_NUM_THREADS", "1")
    return env
