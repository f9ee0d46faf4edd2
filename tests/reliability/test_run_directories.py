"""Finished runs are never lost, and two writers never share a run directory (issue: nothing lost, classes 3-4).

- An identical rerun of a finished run is a no-op ("already finished"); a rerun
  with other arguments is refused in one line naming what differs, touching
  nothing; with --force the old files stay until the new run has finished
  (a kill half-way leaves every one of them), then the new ones replace them.
- An unfinished earlier attempt (killed) with other arguments is cleaned by the
  next attempt once it holds the lock, without --force.
- A second writer on a locked run directory (train, sparse, prune, fused)
  waits for it, saying so, and then finds the run finished (nothing to do);
  past its wait limit it exits 2 naming the holder's pid; the holder
  finishes unharmed either way.
- Stale ``.*.tmp`` files of a killed write are swept when the lock is taken.
"""

from __future__ import annotations

import os
import shutil
import signal
import threading

import pytest
from relutil import assert_same_outputs, error_lines, snapshot, diff_snapshots, wait_stopped

from sparsebasin import cli
from sparsebasin.rundir import LOCK_NAME


def _tree(d):
    return {p.relative_to(d).as_posix(): (p.stat().st_mtime_ns, p.read_bytes())
            for p in d.rglob("*") if p.is_file() and p.name != LOCK_NAME}


def _with(argv, option, value):
    argv = list(argv)
    argv[argv.index(option) + 1] = value
    return argv


def _cli(argv, capsys):
    try:
        rc = cli.main(list(argv))
    except SystemExit as exc:
        rc = exc.code
    return rc, capsys.readouterr().err


@pytest.mark.parametrize("kind", ["dense", "sparse", "prune"])
def test_identical_rerun_of_a_finished_run_is_a_noop(kind, refs, tmp_path, capsys):
    out = tmp_path / kind
    shutil.copytree(refs.out(kind), out)
    before = _tree(out)
    rc, err = _cli(refs.argv(kind, out), capsys)
    assert rc == 0, err
    assert "already finished" in err
    assert _tree(out) == before


@pytest.mark.parametrize("kind,option,value,named", [
    ("dense", "--epochs", "5", "train.epochs 6 -> 5"),
    ("dense", "--seed", "3", "init"),
    ("sparse", "--batch-size", "32", "train.batch_size 16 -> 32"),
    ("prune", "--ft-epochs", "2", "train.epochs 3 -> 2"),
])
def test_finished_run_with_other_arguments_is_refused(kind, option, value, named, refs, tmp_path, capsys):
    out = tmp_path / kind
    shutil.copytree(refs.out(kind), out)
    before = snapshot(tmp_path, refs.data)
    rc, err = _cli(_with(refs.argv(kind, out), option, value), capsys)
    assert rc == 2, err
    lines = error_lines(err)
    assert len(lines) == 1 and str(out) in lines[0] and named in lines[0] and "--force" in lines[0], lines
    assert diff_snapshots(before, snapshot(tmp_path, refs.data)) == []


@pytest.mark.slow
def test_forced_replacement_keeps_the_old_run_until_the_new_one_has_finished(refs, forkserver, tmp_path):
    out = tmp_path / "dense"
    shutil.copytree(refs.dense, out)
    old = _tree(out)
    argv = _with(refs.argv("dense", out), "--epochs", "5") + ["--force"]
    # killed after the second epoch of the new run: the old run's files are all there, unchanged
    run = forkserver.run(argv, tmp_path, root=out, actions={".resume.pt@2": "kill-after"})
    assert run.status == -signal.SIGKILL, run.err[-2000:]
    now = _tree(out)
    assert {k: v for k, v in now.items() if k in old} == old
    assert set(now) - set(old) <= {".resume.pt", ".staging/ckpt/epoch0.pt", ".staging/ckpt/epoch2.pt"}
    # the forced rerun resumes and ends equal to a fresh run with the new arguments
    again = forkserver.run(argv, tmp_path, root=out)
    assert again.status == 0, again.err[-2000:]
    assert "resuming after epoch 2/5" in again.err
    fresh = tmp_path / "fresh"
    ref = forkserver.run(_with(refs.argv("dense", fresh), "--epochs", "5"), tmp_path, root=fresh)
    assert ref.status == 0, ref.err[-2000:]
    assert_same_outputs(fresh, out)
    assert not (out / ".staging").exists() and not (out / ".resume.pt").exists()
    # ckpt/epoch{k} of the old run that the new one does not make are gone, the new ones are there
    assert sorted(p.name for p in (out / "ckpt").iterdir()) == ["epoch0.pt", "epoch2.pt", "epoch4.pt"]


def test_unfinished_attempt_with_other_arguments_is_cleaned_without_force(refs, forkserver, tmp_path):
    out = tmp_path / "dense"
    first = _with(refs.argv("dense", out), "--epochs", "5")
    run = forkserver.run(first, tmp_path, root=out, actions={".resume.pt@2": "kill-after"})
    assert run.status == -signal.SIGKILL
    again = forkserver.run(refs.argv("dense", out), tmp_path, root=out)  # other arguments: 6 epochs
    assert again.status == 0, again.err[-2000:]
    assert "ignoring resume file" in again.err and "resuming" not in again.err
    assert_same_outputs(refs.dense, out)


def test_outputs_deleted_by_snakemake_then_other_arguments_train_without_force(refs, forkserver, tmp_path):
    out = tmp_path / "dense"
    shutil.copytree(refs.dense, out)
    for name in ("final.pt", "result.json", "metrics.csv", "predictions.pt"):  # the declared outputs
        (out / name).unlink()
    argv = _with(refs.argv("dense", out), "--epochs", "5")
    again = forkserver.run(argv, tmp_path, root=out)
    assert again.status == 0, again.err[-2000:]
    assert (out / "result.json").exists()


@pytest.mark.parametrize("kind", ["dense", "sparse", "prune"])
def test_second_writer_is_refused_naming_the_holder(kind, refs, forkserver, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SPARSEBASIN_LOCK_WAIT", "0")  # refuse at once (the holder is stopped until we return)
    out = tmp_path / kind
    label = {"dense": ".resume.pt@1", "sparse": ".resume.pt@1", "prune": "rounds/round1/.resume.pt@1"}[kind]
    seen = {}

    def second_writer(pid, run):
        wait_stopped(pid)
        try:
            seen["before"] = _tree(out)
            seen["rc"], seen["err"] = _cli(refs.argv(kind, out), capsys)
            seen["after"] = _tree(out)
        finally:
            os.kill(pid, signal.SIGCONT)

    run = forkserver.run(refs.argv(kind, out), tmp_path, root=out, actions={label: "stop-before"},
                         on_start=second_writer)
    assert seen["rc"] == 2, seen["err"]
    lines = error_lines(seen["err"])
    assert len(lines) == 1 and str(out) in lines[0] and f"pid {run.pid}" in lines[0], lines
    assert seen["before"] == seen["after"]  # the refused writer touched nothing
    assert run.status == 0, run.err[-2000:]
    assert_same_outputs(refs.out(kind), out)  # the holder finished unharmed
    assert not (out / LOCK_NAME).exists()


def test_fused_member_locked_by_another_writer(refs, forkserver, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SPARSEBASIN_LOCK_WAIT", "0")
    out = tmp_path / "sparse"
    seen = {}

    def fused_writer(pid, run):
        wait_stopped(pid)
        try:
            argv = ["fused", "--run", f"out_dir={tmp_path / 'other'},init={refs.init},mask={refs.mask},branch=lth",
                    "--run", f"out_dir={out},init={refs.init},mask={refs.mask},branch=naive",
                    "--dataset", "mnist1d", "--data-dir", str(refs.data), "--epochs", "1", "--device", "cpu"]
            seen["rc"], seen["err"] = _cli(argv, capsys)
        finally:
            os.kill(pid, signal.SIGCONT)

    run = forkserver.run(refs.argv("sparse", out), tmp_path, root=out, actions={".resume.pt@1": "stop-before"},
                         on_start=fused_writer)
    assert seen["rc"] == 2 and f"pid {run.pid}" in seen["err"], seen["err"]
    assert not (tmp_path / "other").exists()  # all locks or none: the other member's directory was released
    assert run.status == 0


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["dense", "prune"])
def test_second_writer_waits_for_the_holder_then_finds_the_run_finished(kind, refs, forkserver, tmp_path, capsys,
                                                                       monkeypatch):
    monkeypatch.setenv("SPARSEBASIN_LOCK_WAIT", "300")
    out = tmp_path / kind
    label = {"dense": ".resume.pt@1", "prune": "rounds/round1/.resume.pt@1"}[kind]
    seen = {}

    def second_writer(pid, run):
        wait_stopped(pid)
        threading.Timer(2.0, os.kill, (pid, signal.SIGCONT)).start()  # the holder goes on while we wait
        seen["rc"], seen["err"] = _cli(refs.argv(kind, out), capsys)

    run = forkserver.run(refs.argv(kind, out), tmp_path, root=out, actions={label: "stop-before"},
                         on_start=second_writer)
    assert seen["rc"] == 0, seen["err"]
    assert "is being written by another process" in seen["err"] and f"pid {run.pid}" in seen["err"]
    assert "already finished" in seen["err"]  # the waiter trained nothing
    assert run.status == 0, run.err[-2000:]
    assert_same_outputs(refs.out(kind), out)


def test_stale_temporaries_are_swept_when_the_lock_is_taken(refs, tmp_path, capsys):
    out = tmp_path / "dense"
    (out / "ckpt").mkdir(parents=True)
    stale = [out / ".final.pt.k3j2.tmp", out / "ckpt" / ".epoch2.pt.x9.tmp", out / ".staging" / ".y.tmp"]
    for p in stale:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"half a checkpoint")
    rc, err = _cli(refs.argv("dense", out), capsys)
    assert rc == 0, err
    assert not any(p.exists() for p in stale)
    assert "temporary file(s) left by an interrupted write" in err
