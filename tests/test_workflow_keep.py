"""Finished work is never lost and never redone (issue 31): the workflow drives the run directories, not around them.

A tiny MNIST-1D config runs once (module fixture); each test copies the finished
tree (``cp -r``: no time stamps kept, no Snakemake metadata) into its own working
directory and does one thing to it. A run counts as retrained when its
``result.json`` changed bytes; an output counts as written once when it kept the
inode it had when it first appeared.

- a copied tree, and options that never change a result (tracking, threads,
  deterministic kernels), rerun no run;
- one lost sparse ``result.json`` retrains that run only, not its fused group;
- a new seed trains only the new seed's runs;
- a job that finds its run locked waits, then finds it finished: the outputs
  another writer put there survive (the lock reproduction of issue 31);
- two workflows on one results tree, started together, both finish and every
  run is written once;
- a killed Snakemake whose orphaned job is still training: the rerun's job
  waits for it and trains nothing.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import re

import pytest
import yaml
from snakemake_output import job_stats

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent

pytestmark = pytest.mark.slow
RUN_RULES = re.compile(r"(^| )(dense|prune|match|sparse|lmc|plane|imp_barrier)")

TINY = {
    "device": "cpu",
    "threads": 1,
    "fused": True,
    "experiments": {"tiny": {"cells": [{
        "dataset": "mnist1d", "model": "mlp", "model_args": {"depth": 1, "hidden": 16}, "widths": [1], "seeds": [0],
        "dense": {"preset": "mnist1d_dense", "epochs": 2, "lr": 0.1, "momentum": 0.9, "weight_decay": 5.0e-4,
                  "batch_size": 128},
        "sparse": {"preset": "mnist1d_sparse", "lr": 0.05},
        "prune": {"rate": 0.5, "ft_preset": "mnist1d_imp_ft", "ft_epochs": 1, "ft_lr": 0.02, "ft_momentum": 0.0,
                  "ft_weight_decay": 0.0},
        "match": {"method": "activation", "stat": "correlation", "batch_size": 200, "batches": 2},
        "sweep": {"sparsities": [0.5], "rewind": [0]},
    }]}},
}


def _env(**extra) -> dict:
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("OMP_NUM_THREADS", "1")
    env.update(extra)
    return env


def _cmd(work: Path, *args) -> list[str]:
    return [str(VENV_BIN / "snakemake"), "-s", str(REPO / "Snakefile"), "--directory", str(work),
            f"--configfile={work / 'tiny.yaml'}", "--cores", "2", *args]


def snakemake(work: Path, *args, timeout=900, **env) -> subprocess.CompletedProcess:
    return subprocess.run(_cmd(work, *args), cwd=REPO, env=_env(**env), capture_output=True, text=True,
                          timeout=timeout)


def write_config(work: Path, data: Path, seeds=(0,), experiment="tiny") -> None:
    cfg = yaml.safe_load(yaml.safe_dump(TINY))
    cfg["data_dir"] = str(data)
    cfg["experiments"]["tiny"]["cells"][0]["seeds"] = list(seeds)
    cfg["experiments"] = {experiment: cfg["experiments"]["tiny"]}
    work.mkdir(parents=True, exist_ok=True)
    (work / "tiny.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")


def results(work: Path) -> dict[str, bytes]:
    """Every run's result.json (dense, IMP targets, sparse), by path below the working directory."""
    root = work / "results" / "runs"
    return {p.relative_to(work).as_posix(): p.read_bytes() for p in sorted(root.rglob("result.json"))}


def retrained(before: dict, after: dict) -> list[str]:
    return sorted(p for p, b in after.items() if before.get(p) != b)


def copy_tree(src: Path, dst: Path) -> None:
    """``cp -r``: contents only, new time stamps, no .snakemake."""
    write_config(dst, Path(yaml.safe_load((src / "tiny.yaml").read_text())["data_dir"]))
    shutil.copytree(src / "results", dst / "results", copy_function=shutil.copyfile)


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("keep")
    work = root / "first"
    write_config(work, root / "data")
    res = snakemake(work)
    assert res.returncode == 0, (res.stdout + res.stderr)[-4000:]
    return work


def test_copied_tree_and_result_free_options_rerun_no_run(finished, tmp_path):
    work = tmp_path / "copy"
    copy_tree(finished, work)
    before = results(work)
    for extra in ([], ["--config", "threads=2", "deterministic=True", 'tracking={"backend": "tensorboard"}']):
        res = snakemake(work, "-n", "--quiet=rules", *extra)
        assert res.returncode == 0, res.stderr[-3000:]
        jobs = job_stats(res.stdout + res.stderr)
        assert jobs and not RUN_RULES.match(" ".join(jobs)), jobs  # no run job is even scheduled
    res = snakemake(work)
    assert res.returncode == 0, res.stderr[-3000:]
    assert retrained(before, results(work)) == []
    res = snakemake(work, "-n", "--config", "threads=2", 'tracking={"backend": "tensorboard"}')
    assert "Nothing to be done" in res.stdout + res.stderr, res.stdout[-3000:]


def test_one_lost_sparse_result_retrains_that_run_only(finished, tmp_path):
    work = tmp_path / "lost"
    copy_tree(finished, work)
    before = results(work)
    lost = next(p for p in before if "/sparse-" in p and p.endswith("/naive/result.json"))
    (work / lost).unlink()
    res = snakemake(work)
    assert res.returncode == 0, res.stderr[-3000:]
    assert retrained({k: v for k, v in before.items() if k != lost}, results(work)) == [lost]
    log = "".join(p.read_text(encoding="utf-8") for p in (work / "results/logs").rglob("sparse_fused*.log"))
    assert "training 1 of 3 runs" in log, log[-2000:]


def test_a_new_seed_trains_only_the_new_seeds_runs(finished, tmp_path):
    work = tmp_path / "seed"
    copy_tree(finished, work)
    before = results(work)
    write_config(work, Path(yaml.safe_load((finished / "tiny.yaml").read_text())["data_dir"]), seeds=(0, 1))
    res = snakemake(work)
    assert res.returncode == 0, res.stderr[-3000:]
    after = results(work)
    changed = retrained(before, after)
    assert changed and all("/seed1/" in p for p in changed), changed
    assert set(changed) == set(after) - set(before)  # only new runs: dense A and B, IMP, lth/naive/permuted
    assert sum("/sparse-" in p for p in changed) == 3 and sum("/dense/" in p for p in changed) == 2


def test_a_job_refused_by_the_run_lock_deletes_nothing(finished, tmp_path):
    """Issue 31's reproduction: hold dense/A's lock (util-linux flock) while the workflow's dense job starts,
    put the finished outputs in place, release: every output survives and the job trains nothing."""
    work = tmp_path / "lock"
    copy_tree(finished, work)
    dense_a = next((work / "results/runs").rglob("dense/A"))
    files = {p.name: p.read_bytes() for p in dense_a.iterdir() if p.is_file() and not p.name.startswith(".")}
    assert {"final.pt", "result.json", "metrics.csv", "predictions.pt"} <= set(files)
    aside = tmp_path / "aside"
    shutil.move(dense_a, aside)
    dense_a.mkdir()
    holder = subprocess.Popen(["flock", "--no-fork", str(dense_a / ".lock"), "sleep", "600"])  # one process: kill releases
    try:
        sm_out = open(tmp_path / "snakemake.out", "w", encoding="utf-8")  # a pipe nobody reads would fill up
        job = subprocess.Popen(_cmd(work), cwd=REPO, env=_env(), stdout=sm_out, stderr=subprocess.STDOUT)
        log = next(iter((work / "results/logs").glob("runs/**/dense_fused*.log")), None)
        deadline = time.time() + 300
        while time.time() < deadline:  # the dense job has started and waits for the lock
            log = next(iter((work / "results/logs").glob("runs/**/dense_fused*.log")), None)
            if log is not None and "being written by another process" in log.read_text(encoding="utf-8"):
                break
            time.sleep(0.5)
        else:
            pytest.fail("the dense job never reported waiting for the lock")
        for p in aside.iterdir():  # the other writer finishes: its outputs appear
            if p.is_file():
                shutil.copyfile(p, dense_a / p.name)
            else:
                shutil.copytree(p, dense_a / p.name)
    finally:
        holder.kill()
        holder.wait()
    job.wait(timeout=600)
    sm_out.close()
    assert job.returncode == 0, (tmp_path / "snakemake.out").read_text(encoding="utf-8")[-4000:]
    for name, data in files.items():
        assert (dense_a / name).read_bytes() == data, name
    assert "already finished" in log.read_text(encoding="utf-8")


class _Inodes:
    """Watches training outputs as they appear; one replaced after it appeared was trained twice (matching and
    interpolation take no lock: two workflows may both compute one, writing the same bytes atomically)."""

    def __init__(self, root: Path):
        self.root, self.first, self.stop = root, {}, threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    def _watch(self):
        while not self.stop.is_set():
            for p in list(self.root.rglob("*.pt")) + list(self.root.rglob("result.json")):
                if not any(part in p.as_posix() for part in ("/dense/", "/sparse-", "/prune-")):
                    continue
                try:
                    self.first.setdefault(p, p.stat().st_ino)
                except FileNotFoundError:
                    pass
            time.sleep(0.1)

    def rewritten(self) -> list[str]:
        self.stop.set()
        self.thread.join()
        return [str(p) for p, ino in self.first.items() if p.exists() and p.stat().st_ino != ino]


def test_two_workflows_on_one_results_tree_finish_and_train_each_run_once(finished, tmp_path):
    """Two configs on one results tree, started together: both finish, and the runs they share are each written
    once (the second job waits for the first's lock and finds its run finished)."""
    data = Path(yaml.safe_load((finished / "tiny.yaml").read_text())["data_dir"])
    shared = tmp_path / "shared"
    shared.mkdir()
    works = [tmp_path / "one", tmp_path / "two"]
    for w in works:  # two configs (their own experiments, tables and figures) whose runs are the same
        write_config(w, data, experiment=w.name)
        (w / "results").symlink_to(shared)
    watch = _Inodes(shared)
    logs = [open(tmp_path / f"snakemake{i}.out", "w", encoding="utf-8") for i in range(2)]
    procs = [subprocess.Popen(_cmd(w), cwd=REPO, env=_env(SPARSEBASIN_LOCK_WAIT="600"), stdout=log,
                              stderr=subprocess.STDOUT) for w, log in zip(works, logs)]
    for p, log in zip(procs, logs):
        p.wait(timeout=900)
        log.close()
    outs = [(tmp_path / f"snakemake{i}.out").read_text(encoding="utf-8") for i in range(2)]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(o[-3000:] for o in outs)
    assert watch.rewritten() == []
    assert sorted(results(works[0])) == sorted(results(finished))  # the same runs, each written once


def test_killed_snakemake_orphan_finishes_while_the_rerun_waits(finished, tmp_path):
    work = tmp_path / "orphan"
    copy_tree(finished, work)
    before = results(work)
    prune = next((work / "results/runs").rglob("prune-*"))
    shutil.rmtree(prune)  # the IMP job runs again from scratch: long enough to kill Snakemake under it
    sm = subprocess.Popen(_cmd(work), cwd=REPO, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                          start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and not any(prune.rglob(".lock")):
        time.sleep(0.2)
    assert any(prune.rglob(".lock")), "the IMP job never started"
    os.kill(sm.pid, signal.SIGKILL)  # Snakemake dies; its IMP job (another process) goes on as an orphan
    sm.wait()
    assert snakemake(work, "--unlock").returncode == 0
    res = snakemake(work, "--rerun-incomplete")
    assert res.returncode == 0, res.stderr[-3000:]
    after = results(work)
    changed = retrained(before, after)
    assert all("/prune-" in p for p in changed), changed  # the orphan's IMP targets, written once
    log = next((work / "results/logs").rglob("prune.log")).read_text(encoding="utf-8")
    assert "being written by another process" in log or "already finished" in log, log[-2000:]


def test_a_partial_target_names_what_else_its_fused_job_trains_and_stale_outputs_go(finished, tmp_path):
    work = tmp_path / "partial"
    copy_tree(finished, work)
    sparse = sorted(p for p in results(work) if "/sparse-" in p)
    lth, naive = (next(p for p in sparse if p.endswith(f"/{b}/result.json")) for b in ("lth", "naive"))
    for p in (lth, naive):
        (work / p).unlink()
    stale = ["results/tiny/figures/accuracy_vs_sparsity.pdf", "results/tiny/tables/lmc.md"]  # an earlier config's
    for p in stale:
        (work / p).write_text("old", encoding="utf-8")
    res = snakemake(work, lth)
    assert res.returncode == 0, res.stderr[-3000:]
    note = [line for line in res.stderr.splitlines() if line.startswith("note: sparse_fused")]
    assert len(note) == 1 and "needs 1 of them and also trains 1 more" in note[0], res.stderr[-3000:]
    assert "--config fused=False" in note[0]
    moved = [line for line in res.stderr.splitlines() if line.startswith("moved 2 file(s) of results/tiny/")]
    assert moved, res.stderr[-3000:]
    for p in stale:
        assert not (work / p).exists()
    assert len(list((work / "results/tiny/stale").rglob("*.pdf"))) == 1
