"""Faults of the workflow driver: a second Snakemake on the same results, and Snakemake killed mid-run.

One run of a tiny configuration of the real workflow (``--cores 2``: dense A
and B, the IMP-FT job, the lth and naive sparse runs) is interrupted once the
IMP job is mid-round (its first round's ``.resume.pt`` exists):

1. the whole run (Snakemake and its job) is frozen with SIGSTOP and a second
   ``snakemake`` with the same command is started on the same directory: it
   must be refused (Snakemake's lock) and change no file;
2. the first Snakemake and every process it started get SIGKILL (a login node
   dying); every output left on disk must load cleanly;
3. the rerun with ``--rerun-incomplete`` (after ``--unlock``, which a hard
   kill makes necessary) completes the DAG without redoing the finished jobs
   (their outputs keep their mtimes and bytes, the rerun's job list has no
   dense/prepare job) and the IMP job resumes from its ``.resume.pt``.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from relutil import (REPO, WORKFLOW_CONFIG, check_loads, diff_snapshots, env_with_venv, file_signature, is_tmp,
                     small_mnist1d, snapshot)
from workflow_plan import find

pytestmark = pytest.mark.slow

SPARSE = [find("sparse", WORKFLOW_CONFIG, branch=b) for b in ("lth", "naive")]
TARGETS = [f"{run}/result.json" for run in SPARSE]
PRUNE = find("prune", WORKFLOW_CONFIG)
FINISHED_BEFORE_KILL = [f"{find('dense', WORKFLOW_CONFIG, net=net)}/{name}" for net in "AB"
                        for name in ("final.pt", "result.json", "metrics.csv", "predictions.pt")]


def snakemake_cmd(work: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(work),
            "--configfile", str(work / "tiny.yaml"), "--cores", "2", *extra, *TARGETS]


def descendants(pid: int) -> list[int]:
    """pid and every process below it (from /proc), parents first."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop(0)
        out.append(p)
        todo += children.get(p, [])
    return out


def signal_tree(pids: list[int], sig: int) -> None:
    for p in pids:
        try:
            os.kill(p, sig)
        except ProcessLookupError:
            pass


def rules_run(log: str) -> list[str]:
    """Rule names of the jobs a Snakemake log says it started."""
    return re.findall(r"^\s*(?:local)?rule (\w+):", log, flags=re.M)


def check_outputs(work: Path) -> dict:
    """Every result file except logs/benchmarks loads cleanly; io temporaries are never declared names."""
    kinds = {}
    for p in sorted((work / "results").rglob("*")):
        rel = p.relative_to(work).as_posix()
        if p.is_dir() or "/logs/" in rel or "/benchmarks/" in rel or is_tmp(p) or p.name == ".lock":
            continue  # (a killed writer's lock file: the next writer of that directory takes it over)
        kinds[rel] = check_loads(p)
    return kinds


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory):
    """Run the tiny workflow, freeze it mid-IMP, try a second Snakemake, then SIGKILL the first."""
    work = tmp_path_factory.mktemp("wf")
    (work / "tiny.yaml").write_text(yaml.safe_dump(WORKFLOW_CONFIG, sort_keys=False))
    small_mnist1d(work / "data")
    env = env_with_venv()
    log1 = open(work / "first.log", "w")
    first = subprocess.Popen(snakemake_cmd(work), cwd=work, env=env, stdout=log1, stderr=subprocess.STDOUT)
    state = {"work": work, "env": env}
    try:
        resume = work / PRUNE / "rounds" / "round1" / ".resume.pt"
        deadline = time.monotonic() + 600
        while not resume.exists():
            assert first.poll() is None, (work / "first.log").read_text()[-5000:]
            assert time.monotonic() < deadline, "the IMP job never wrote its resume file"
            time.sleep(0.005)
        tree = descendants(first.pid)
        signal_tree(tree, signal.SIGSTOP)
        state["frozen_tree"] = len(tree)

        # --- a second invocation while the first holds the directory ----------
        dirs = [work / "results", work / "data", work / ".snakemake" / "locks", work / ".snakemake" / "incomplete",
                work / ".snakemake" / "metadata"]
        before = snapshot(*dirs)
        t0 = time.monotonic()
        second = subprocess.run(snakemake_cmd(work), cwd=work, env=env, capture_output=True, text=True, timeout=300)
        state["second"] = second
        state["second_seconds"] = time.monotonic() - t0
        state["second_diff"] = diff_snapshots(before, snapshot(*dirs))

        # --- kill -9 the first Snakemake and every process it started ------------
        signal_tree(tree, signal.SIGCONT)
        signal_tree(descendants(first.pid), signal.SIGKILL)
        first.wait(timeout=60)
        log1.close()
        state["first_status"] = first.returncode
        state["resume_files_at_kill"] = sorted(str(p.relative_to(work)) for p in work.rglob(".resume.pt"))
        state["after_kill"] = check_outputs(work)
        state["finished"] = {f: file_signature(work / f) for f in FINISHED_BEFORE_KILL if (work / f).exists()}
        yield state
    finally:
        if first.poll() is None:
            signal_tree(descendants(first.pid), signal.SIGKILL)
            first.wait(timeout=60)


def test_second_snakemake_on_the_same_results_is_refused(interrupted):
    second = interrupted["second"]
    out = second.stdout + second.stderr
    assert second.returncode != 0, out[-3000:]
    assert "cannot be locked" in out or "LockException" in out, out[-3000:]
    assert interrupted["second_diff"] == [], interrupted["second_diff"]
    print(f"\nsecond snakemake refused in {interrupted['second_seconds']:.1f}s, no file changed: "
          + next(line for line in out.splitlines() if "lock" in line.lower()))


def test_killed_snakemake_rerun_completes_without_redoing_finished_jobs(interrupted):
    work, env = interrupted["work"], interrupted["env"]
    assert interrupted["first_status"] == -signal.SIGKILL
    after_kill = interrupted["after_kill"]
    for f in FINISHED_BEFORE_KILL:
        assert f in after_kill, f"{f} should have been finished before the kill"
    assert not any(f.startswith(run) for f in after_kill for run in SPARSE), "the kill should land before the sparse jobs"
    assert interrupted["resume_files_at_kill"], "the IMP job should have been killed mid-round"

    steps = []
    rerun = subprocess.run(snakemake_cmd(work, "--rerun-incomplete"), cwd=work, env=env, capture_output=True,
                           text=True, timeout=600)
    out = rerun.stdout + rerun.stderr
    if rerun.returncode != 0 and ("cannot be locked" in out or "LockException" in out):
        # A hard kill leaves Snakemake's lock behind; the message must say how to clear it.
        assert "--unlock" in out, out[-3000:]
        steps.append("refused: stale lock (message names --unlock)")
        unlock = subprocess.run(snakemake_cmd(work, "--unlock"), cwd=work, env=env, capture_output=True, text=True,
                                timeout=300)
        assert unlock.returncode == 0, unlock.stdout + unlock.stderr
        steps.append("snakemake --unlock")
        rerun = subprocess.run(snakemake_cmd(work, "--rerun-incomplete"), cwd=work, env=env, capture_output=True,
                               text=True, timeout=600)
        out = rerun.stdout + rerun.stderr
    steps.append("snakemake --rerun-incomplete")
    assert rerun.returncode == 0, out[-5000:]

    jobs = rules_run(out)
    assert "dense" not in jobs and "prepare" not in jobs, jobs
    assert any(j.startswith("prune_") for j in jobs) and jobs.count("sparse") == 2, jobs
    for f, sig in interrupted["finished"].items():
        assert file_signature(work / f) == sig, f"{f} was rewritten by the rerun"
    prune_log = (work / "results" / "logs" / PRUNE.removeprefix("results/") / "prune.log").read_text()
    assert "imp-round1: resuming after epoch" in prune_log, prune_log[-3000:]
    kinds = check_outputs(work)
    for t in TARGETS:
        assert kinds.get(t) == "json", t
    assert not list((work / "results").rglob(".resume.pt"))
    print(f"\nrerun after kill -9 ({' -> '.join(steps)}): jobs {sorted(set(jobs))}; "
          f"{len(interrupted['finished'])} finished outputs untouched; {len(kinds)} outputs load cleanly")


def test_plain_rerun_after_a_kill_mid_job_says_rerun_incomplete(tmp_path):
    """What a user sees after kill -9 while a job had written some of its outputs (Snakemake 9): a plain
    rerun stops with IncompleteFilesException naming --rerun-incomplete, and that command (after
    --unlock when the stale lock is reported first) completes. docs/reliability.md quotes both messages."""
    work = tmp_path
    (work / "tiny.yaml").write_text(yaml.safe_dump(WORKFLOW_CONFIG, sort_keys=False))
    small_mnist1d(work / "data")
    env = env_with_venv()
    first = subprocess.Popen(snakemake_cmd(work), cwd=work, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.STDOUT, start_new_session=True)
    marker = work / PRUNE / "S0.5" / "mask.pt"  # the first target file the IMP job publishes
    deadline = time.monotonic() + 600
    while not marker.exists():
        assert first.poll() is None and time.monotonic() < deadline, "the IMP job never published a target"
        time.sleep(0.001)
    os.killpg(first.pid, signal.SIGSTOP)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(timeout=60)
    plain = subprocess.run(snakemake_cmd(work), cwd=work, env=env, capture_output=True, text=True, timeout=300)
    out = plain.stdout + plain.stderr
    assert plain.returncode != 0
    assert ("IncompleteFilesException" in out and "--rerun-incomplete" in out) or "--unlock" in out, out[-3000:]
    if "--unlock" in out and "IncompleteFilesException" not in out:
        subprocess.run(snakemake_cmd(work, "--unlock"), cwd=work, env=env, capture_output=True, timeout=300)
    rerun = subprocess.run(snakemake_cmd(work, "--rerun-incomplete"), cwd=work, env=env, capture_output=True,
                           text=True, timeout=600)
    if rerun.returncode != 0 and "--unlock" in rerun.stdout + rerun.stderr:
        subprocess.run(snakemake_cmd(work, "--unlock"), cwd=work, env=env, capture_output=True, timeout=300)
        rerun = subprocess.run(snakemake_cmd(work, "--rerun-incomplete"), cwd=work, env=env, capture_output=True,
                               text=True, timeout=600)
    assert rerun.returncode == 0, (rerun.stdout + rerun.stderr)[-3000:]
    for t in TARGETS:
        assert (work / t).exists()
