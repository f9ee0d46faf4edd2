#!/usr/bin/env python3
"""Run snakemake and show what a person can follow: jobs done of total and the running jobs' epochs.

    python workflow/scripts/follow.py [--report report.html] -- snakemake --cores all [ARGS...]

(`make run` does this.) Snakemake prints a block of about 15 lines per job (about 950 for the demo); here
its output goes to Snakemake's own log (.snakemake/log/) only, and the terminal gets one status line,
redrawn in place:

    [23/57 40%] 2m31s  running: sparse_fused_mnist1d_mlp_w4_..._k4 (fused[6] epoch 7/20), match

(the epoch is the last "[sparsebasin] ... epoch i/n" line of the job's log; on a pipe or file a plain line
every --every seconds instead). At the end: on success the reproduction headline and the paths of each
experiment's summary.md, scorecard and the HTML report (built with `snakemake --report` when --report is
given); on failure Snakemake's error blocks and the failed job's log (the Snakefile's onerror). The exit
status is snakemake's. A plain `snakemake --cores all` does not need this script.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

PROGRESS = re.compile(r"^(\d+) of (\d+) steps \((\d+)%\) done")
JOB = re.compile(r"^(?:local)?(?:rule|checkpoint) (\S+):$")
FIELD = re.compile(r"^\s+(jobid|log): (.+)$")
FINISHED = re.compile(r"^Finished jobid: (\d+)")
TOTAL = re.compile(r"^total\s+(\d+)$")
EPOCH = re.compile(r"^\[sparsebasin\] (.+? epoch \d+/\d+)")
NOTHING = "Nothing to be done"


class State:
    """What snakemake's output said so far (filled by the reader thread)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.lines: list[str] = []
        self.done = 0
        self.total: int | None = None
        self.running: dict[str, tuple[str, list[str]]] = {}  # jobid -> (rule, log files)
        self.block: tuple[str | None, str | None, list[str]] | None = None  # rule, jobid, logs being read
        self.nothing = False

    def feed(self, line: str) -> None:
        with self.lock:
            self.lines.append(line)
            if self.block is not None:
                m = FIELD.match(line)
                if m:
                    rule, jobid, logs = self.block
                    if m.group(1) == "jobid":
                        jobid = m.group(2).strip()
                    else:
                        logs = [p for p in m.group(2).split(", ") if p]
                    self.block = (rule, jobid, logs)
                    if jobid is not None:  # running from here on (its block's end shows only with the next job)
                        self.running[jobid] = (rule, logs)
                    return
                if line.startswith((" ", "\t")):
                    return
                self.block = None
            m = JOB.match(line)
            if m:
                self.block = (m.group(1), None, [])
                return
            m = FINISHED.match(line)
            if m:
                self.running.pop(m.group(1), None)
                return
            m = PROGRESS.match(line)
            if m:
                self.done, self.total = int(m.group(1)), int(m.group(2))
                return
            m = TOTAL.match(line)
            if m and self.total is None:
                self.total = int(m.group(1))
            if NOTHING in line:
                self.nothing = True


def last_epoch(logs: list[str]) -> str | None:
    """The last per-epoch line (src/sparsebasin/progress.py, log mode) of a job's log files."""
    for log in logs:
        try:
            with open(log, "rb") as fh:
                fh.seek(0, os.SEEK_END)
                fh.seek(max(0, fh.tell() - 8192))
                text = fh.read().decode("utf-8", "replace")
        except OSError:
            continue
        for line in reversed(text.splitlines()):
            m = EPOCH.match(line)
            if m:
                return m.group(1)
    return None


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m // 60}h{m % 60:02d}m" if m >= 60 else f"{m}m{s:02d}s" if m else f"{s}s"


def status(state: State, elapsed: float, width: int = 160) -> str:
    with state.lock:
        done, total, running = state.done, state.total, list(state.running.values())
    head = f"[{done}/{total} {100 * done // total}%]" if total else "[planning]"
    parts = []
    for rule, logs in running:
        epoch = last_epoch(logs)
        parts.append(f"{rule} ({epoch})" if epoch else rule)
    line = f"{head} {_clock(elapsed)}" + (f"  running: {', '.join(parts)}" if parts else "")
    return line if len(line) <= width else line[: width - 3] + "..."


def failure_text(lines: list[str], keep: int = 60) -> list[str]:
    """Snakemake's lines worth showing after a failure: from its first error on, or its last lines."""
    for i, line in enumerate(lines):
        if line.startswith(("Error in rule", "WorkflowError", "RuleException", "MissingInputException",
                            "SyntaxError", "config error", "Error:", "LockException")):
            return lines[i:]
    return lines[-keep:]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--report", default=None, metavar="HTML",
                   help="after a successful run, build Snakemake's HTML report here and name it at the end")
    p.add_argument("--every", type=float, default=30.0,
                   help="seconds between status lines when the output is not a terminal (default 30)")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- snakemake ARGS...")
    args = p.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        p.error("give the snakemake command after --")

    out = sys.stderr
    tty = out.isatty()
    state = State()
    start = time.monotonic()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             encoding="utf-8", errors="replace", bufsize=1)

    def read():
        for line in child.stdout:
            state.feed(line.rstrip("\n"))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    # Ctrl-C reaches snakemake too (same process group); let it stop its jobs, then report.
    signal.signal(signal.SIGINT, lambda *_: None)
    last_line, last_print = "", 0.0
    while child.poll() is None:
        time.sleep(0.5 if tty else 1.0)
        # on a terminal, never wider than it (a wrapped line cannot be redrawn in place)
        width = shutil.get_terminal_size((160, 24)).columns - 1 if tty else 160
        line = status(state, time.monotonic() - start, width)
        now = time.monotonic()
        if tty:
            out.write("\r" + line + "\x1b[K")
            out.flush()
        elif line != last_line and now - last_print >= args.every:
            out.write(line + "\n")
            out.flush()
            last_line, last_print = line, now
    reader.join(timeout=10)
    rc = child.wait()
    if tty:
        out.write("\r\x1b[K")
    with state.lock:
        lines = list(state.lines)
    elapsed = _clock(time.monotonic() - start)

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))
    from sparsebasin import finish

    logfile = next((m.group(1) for m in (re.match(r"^Complete log\(s\): (\S+)", ln) for ln in lines) if m), None)
    if rc != 0:
        out.write("\n".join(failure_text(lines)) + "\n")
        out.write(f"snakemake failed (exit {rc}) after {elapsed}"
                  + (f"; its full log: {logfile}" if logfile else "") + "\n")
        return rc
    with state.lock:
        done, total, nothing = state.done, state.total, state.nothing
    summary = "nothing to be done (every result is up to date)" if nothing and not done else \
        f"{done} of {total} jobs done in {elapsed}"
    out.write(summary + (f"; Snakemake's log: {logfile}" if logfile else "") + "\n")
    report = None
    if args.report:
        res = subprocess.run([*command, "--report", args.report], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, encoding="utf-8", errors="replace")
        if res.returncode != 0:
            out.write(res.stdout[-3000:] + f"\nbuilding the report failed (exit {res.returncode})\n")
            return res.returncode
        report = args.report
    workdir = _workdir(command)
    if report is not None:
        report = workdir / report  # snakemake writes it relative to its working directory
    experiments = _experiments(lines, workdir)
    finish.print_lines(finish.results_lines(experiments, workdir, report), "Results")
    return 0


def _workdir(command: list[str]) -> Path:
    for i, a in enumerate(command):
        if a in ("--directory", "-d") and i + 1 < len(command):
            return Path(command[i + 1])
        if a.startswith("--directory="):
            return Path(a.split("=", 1)[1])
    return Path.cwd()


def _experiments(lines: list[str], workdir: Path) -> list[str]:
    """The experiments of the run's config files (Snakemake names them in its header), else every experiment
    with a summary under results/."""
    import ast

    import yaml

    for line in lines:
        m = re.match(r"^\s*Config file\(s\): (\[.*\])$", line)
        if m:
            try:
                names: dict = {}
                for f in ast.literal_eval(m.group(1)):
                    names.update(dict.fromkeys((yaml.safe_load(Path(f).read_text(encoding="utf-8")) or {})
                                               .get("experiments") or {}))
                return list(names)
            except (OSError, ValueError, SyntaxError, AttributeError, yaml.YAMLError):
                break
    root = workdir / "results"
    return sorted(p.parent.name for p in root.glob("*/summary.md")) if root.is_dir() else []


if __name__ == "__main__":
    sys.exit(main())
