"""SIGKILL a training step at seeded random points; the rerun ends bit-identical, nothing is half-written.

Ten kills in total, spread over the three step kinds that train (dense
``train``: 4, ``prune`` (IMP-FT rounds): 3, ``sparse``: 3). Each kind runs one
chain: kill, rerun the same command and kill again, ..., and a last rerun
that finishes. The kill points are drawn with a fixed seed from the write
events of an undisturbed reference run of the same command:

- injected kills (``_launch.py``): the child SIGKILLs itself just before an
  atomic write, half-way through it (the temporary cut to half its bytes) or
  right after the rename, at the k-th write of the run;
- one asynchronous kill per chain: the test sends SIGKILL after a random
  delay once the run has written a given resume file (training is slowed
  with a per-batch sleep so the kill lands mid-epoch).

After every kill, every file in the run directory must load cleanly (io
temporaries may exist, never under a declared name). After the last rerun,
every tensor of every ``.pt`` output (final.pt, rewind checkpoints, masks,
round checkpoints, predictions) is ``torch.equal`` to the reference run.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import pytest
from relutil import assert_same_outputs, check_tree, env_with_venv, is_tmp, wait_for_event

pytestmark = pytest.mark.slow

PLAN = {"dense": 3, "prune": 2, "sparse": 2}  # injected kills per kind; +1 asynchronous kill each = 10
PHASES = ("kill-before", "kill-mid", "kill-after")
SLOW = 0.008  # seconds per batch during the asynchronous-kill run (38 batches per epoch)


def _resume_labels(labels: list[str], kind: str) -> list[str]:
    """Resume-file writes at least one epoch before the end of the run (async kill triggers)."""
    out = [lbl for lbl in labels if ".resume.pt@" in lbl]
    if kind == "prune":  # not the last round's last epoch
        last_round = max(lbl.split("/")[1] for lbl in out)
        out = [lbl for lbl in out if not (lbl.split("/")[1] == last_round and lbl.endswith("@3"))]
    else:
        last = max(int(lbl.rsplit("@", 1)[1]) for lbl in out)
        out = [lbl for lbl in out if int(lbl.rsplit("@", 1)[1]) < last]
    return out


def make_plan(kind: str, labels: list[str]) -> list[tuple[str, str]]:
    """[(label, action)]: PLAN[kind] injected kills in write order, then one asynchronous kill."""
    rng = random.Random(f"sparsebasin-reliability-kill-{kind}")
    labels = [lbl for lbl in labels if "#" not in lbl]  # writes repeated in one process (rounds.json)
    n = PLAN[kind]
    triggers = [t for t in _resume_labels(labels, kind) if labels.index(t) >= n + 1]
    trigger = rng.choice(triggers)
    before = labels[: labels.index(trigger)]
    picks = sorted(rng.sample(range(len(before)), n))
    plan = [(before[i], rng.choice(PHASES)) for i in picks]
    plan.append((trigger, "async"))
    return plan


@pytest.mark.parametrize("kind", ["dense", "prune", "sparse"])
def test_sigkill_chain_then_rerun_is_bit_identical(kind, refs, forkserver, tmp_path):
    ref_run = refs.runs[kind]
    plan = make_plan(kind, ref_run.event_labels())
    out = tmp_path / kind
    argv = refs.argv(kind, out)
    report = []

    for label, action in plan:
        if action == "async":
            rng = random.Random(f"sparsebasin-reliability-delay-{kind}")
            delay = rng.uniform(0.0, 0.2)

            def kill_later(pid, run, label=label, delay=delay):
                assert wait_for_event(run, label, pid=pid), f"{kind}: run ended before {label}"
                time.sleep(delay)
                os.kill(pid, signal.SIGKILL)

            run = forkserver.run(argv, tmp_path, root=out, slow=SLOW, on_start=kill_later)
            where = f"{delay:.3f}s after {label}"
        else:
            run = forkserver.run(argv, tmp_path, root=out, actions={label: action})
            events = run.events.read_text().splitlines()
            last = events[-1].split(" ")[:2] if events else None
            want = ["end" if action == "kill-after" else "begin", label]
            assert last == want, f"{kind}: expected to die at {want}, last event {last}\n{run.err[-2000:]}"
            where = f"{action} {label}"
        assert run.status == -signal.SIGKILL, f"{kind} ({where}): status {run.status}\n{run.err[-3000:]}"
        kinds = check_tree(out)  # every existing file loads cleanly
        tmps = [p.name for p in out.rglob("*") if is_tmp(p)]
        if action == "kill-mid":
            assert tmps, f"{kind}: a kill mid-write must leave the cut temporary, not a declared file"
        report.append((where, sorted(kinds), tmps))

    # The last rerun: for dense, the literal command in a fresh interpreter; else in the fork server.
    if kind == "dense":
        proc = subprocess.run([sys.executable, "-m", "sparsebasin", *argv], cwd=tmp_path, env=env_with_venv(),
                              capture_output=True, text=True, timeout=600)
        status, err = proc.returncode, proc.stderr
    else:
        final = forkserver.run(argv, tmp_path, root=out)
        status, err = final.status, final.err
    assert status == 0, err[-3000:]
    assert "resuming after epoch" in err, err[-3000:]
    assert not list(out.rglob(".resume.pt"))
    check_tree(out)
    n = assert_same_outputs(refs.out(kind), out)
    assert n > 0
    print(f"\n{kind}: {len(plan)} kills survived, {n} tensors bit-identical to the undisturbed run")
    for where, files, tmps in report:
        print(f"  killed {where}: {len(files)} files load cleanly, temporaries {tmps}")
