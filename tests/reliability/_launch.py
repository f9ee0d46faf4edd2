"""Run ``sparsebasin`` step CLIs with fault hooks, as a fork server or once.

Fork server (``python _launch.py serve``): imports torch and every step once,
then reads one JSON request per line on stdin, forks a child per request and
answers two JSON lines on stdout: ``{"pid": N}`` as soon as the child exists
(so the test can ``kill -9`` it by id) and ``{"status": S}`` when it ends
(``S`` = exit code, or ``-signal``). A forked child is a real process that
dies for real on SIGKILL; forking only saves the ~3 s interpreter + torch
import of each of the many reruns. Requests run one at a time.

Once (``python _launch.py once REQUEST.json``): the same in this process.

Request keys:
  argv      the step's command line (``["train", "--dataset", ...]``), run by ``sparsebasin.cli.main``
  cwd       working directory
  stdout, stderr   files the child writes its output to
  root      directory whose relative paths label the write events
  events    file that receives one line per atomic write: ``begin LABEL t`` / ``end LABEL t``
  actions   {LABEL: action}; action is one of
              kill-before   SIGKILL before the file is created
              kill-mid      write the temporary, cut it to half its bytes, SIGKILL before the rename
              kill-after    SIGKILL right after the rename
              stop-before   SIGSTOP before the write (the test resumes the child with SIGCONT)
  slow      seconds to sleep per training batch (stretches a run so an asynchronous kill lands mid-run;
            sleeping does not change any number)

A write's LABEL is the output path relative to ``root``; the trainer's scratch
file gets ``@epoch`` (``.resume.pt@3``) and a path written a second time in one
process gets ``#2``, ``#3``, ...
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path

import torch  # noqa: F401  (imported once in the server)

import sparsebasin.data as sdata
from sparsebasin import cli
from sparsebasin import io as sio
from sparsebasin.training import resume as sresume

for _step in ("train", "prune", "sparse", "permute", "match", "prepare"):
    cli._load(_step)

_ORIG_ATOMIC = sio.atomic_path
_ORIG_RESUME_SAVE = sresume.save
_ORIG_BATCHES = sdata.batches


def _install(req: dict) -> None:
    root = Path(req.get("root") or req.get("cwd") or ".").resolve()
    actions = dict(req.get("actions") or {})
    events_path = req.get("events")
    events = open(events_path, "a", buffering=1) if events_path else None
    seen: collections.Counter = collections.Counter()
    current = {"epoch": None}
    t0 = time.monotonic()

    def note(kind: str, label: str) -> None:
        if events is not None:
            events.write(f"{kind} {label} {time.monotonic() - t0:.4f}\n")
            events.flush()

    def die() -> None:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(60)  # never reached

    def label_of(path) -> str:
        p = Path(path).resolve()
        try:
            rel = p.relative_to(root).as_posix()
        except ValueError:
            rel = p.as_posix()
        if p.name == sresume.FILENAME and current["epoch"] is not None:
            rel += f"@{current['epoch']}"
        seen[rel] += 1
        return rel if seen[rel] == 1 else f"{rel}#{seen[rel]}"

    @contextlib.contextmanager
    def atomic_path(path):
        label = label_of(path)
        action = actions.get(label)
        note("begin", label)
        if action == "kill-before":
            die()
        if action == "stop-before":
            os.kill(os.getpid(), signal.SIGSTOP)
        with _ORIG_ATOMIC(path) as tmp:
            yield tmp
            if action == "kill-mid":
                size = tmp.stat().st_size
                with open(tmp, "r+b") as fh:
                    fh.truncate(size // 2)
                die()
        note("end", label)
        if action == "kill-after":
            die()

    def resume_save(path, **kw):
        current["epoch"] = kw.get("epoch")
        try:
            return _ORIG_RESUME_SAVE(path, **kw)
        finally:
            current["epoch"] = None

    sio.atomic_path = atomic_path
    sresume.save = resume_save

    slow = float(req.get("slow") or 0)
    if slow > 0:
        def batches(*a, **k):
            for item in _ORIG_BATCHES(*a, **k):
                time.sleep(slow)
                yield item

        sdata.batches = batches


def _child(req: dict) -> int:
    if req.get("cwd"):
        os.chdir(req["cwd"])
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    for fd, key in ((1, "stdout"), (2, "stderr")):
        if req.get(key):
            out = os.open(req[key], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            os.dup2(out, fd)
    _install(req)
    try:
        rc = cli.main(list(req["argv"]))
    except SystemExit as exc:  # argparse
        rc = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
        rc = 99
    sys.stdout.flush()
    sys.stderr.flush()
    return int(rc)


def serve() -> None:
    for line in sys.stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        pid = os.fork()
        if pid == 0:
            code = 99
            try:
                code = _child(req)
            finally:
                os._exit(code)
        print(json.dumps({"pid": pid}), flush=True)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"status": os.waitstatus_to_exitcode(status)}), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve()
    elif sys.argv[1] == "once":
        sys.exit(_child(json.loads(Path(sys.argv[2]).read_text())))
    else:
        raise SystemExit(f"usage: {sys.argv[0]} serve | once REQUEST.json")
