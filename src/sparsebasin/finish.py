"""What the end of a workflow run says: the reproduction headline and where the results are, or the failing
job's log (torch-free; the Snakefile's ``onsuccess``/``onerror`` and ``workflow/scripts/follow.py`` print it).

Snakemake's own ending is "57 of 57 steps (100%) done" and the path of its log; the answer a user ran the
workflow for (did it reproduce, and where is the summary) is the first line of each experiment's
``summary.md``, and on failure the useful text is the last lines of the failed job's own log file, which
Snakemake names but does not show.
"""

from __future__ import annotations

import re
from pathlib import Path

REPORT = "report.html"


def headline(summary: Path) -> str | None:
    """The first line of ``summary.md`` after its provenance comment, without Markdown emphasis."""
    try:
        lines = Path(summary).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    in_comment = False
    for line in lines:
        text = line.strip()
        if in_comment:
            in_comment = "-->" not in text
            continue
        if text.startswith("<!--"):
            in_comment = "-->" not in text
            continue
        if text:
            return text.replace("**", "")
    return None


def _shown(path: Path, cwd: Path) -> str:
    """``path`` relative to where the user is, when it lies below it."""
    try:
        return str(Path(path).resolve().relative_to(cwd.resolve()))
    except ValueError:
        return str(Path(path).resolve())


def results_lines(experiments, workdir: str | Path = ".", report: str | Path | None = None,
                  cwd: str | Path | None = None) -> list[str]:
    """Per experiment with a summary: its headline and the paths of summary.md, the scorecard and the report.

    ``report`` is the HTML report's path when it was just built; otherwise the line says how to build it.
    """
    workdir = Path(workdir)
    cwd = Path(cwd) if cwd is not None else Path.cwd()
    out = []
    for exp in experiments:
        summary = workdir / "results" / exp / "summary.md"
        if not summary.is_file():
            continue
        line = headline(summary) or "(summary.md has no headline)"
        out += [f"{exp}: {line}",
                f"  summary:   {_shown(summary, cwd)}",
                f"  scorecard: {_shown(workdir / 'results' / exp / 'tables' / 'scorecard.md', cwd)}"]
    if out:
        if report is not None and Path(report).is_file():
            out.append(f"  report:    {_shown(Path(report), cwd)}")
        else:
            out.append(f"  report:    snakemake --report {REPORT}  (then open {REPORT})")
    return out


_FAILED = re.compile(r"^Error in rule (\S+):")
_LOG = re.compile(r"^\s+log: (.+?)(?: \(check log file\(s\) for error details\))?$")


def _logfile(snakemake_log) -> Path | None:
    """Snakemake hands its hooks the run's log file, or a list of them (Snakemake 9)."""
    if isinstance(snakemake_log, (list, tuple)):
        snakemake_log = next((f for f in snakemake_log if f), None)
    return Path(snakemake_log) if snakemake_log else None


def failed_jobs(snakemake_log) -> list[tuple[str, list[str]]]:
    """(rule, its log files) of every job that failed, read from Snakemake's own log of the run."""
    path = _logfile(snakemake_log)
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines() if path else []
    except OSError:
        return []
    jobs, rule = [], None
    for line in lines:
        m = _FAILED.match(line)
        if m:
            rule = m.group(1)
            jobs.append((rule, []))
            continue
        if rule is not None:
            if not line.strip():
                rule = None
                continue
            m = _LOG.match(line)
            if m:
                jobs[-1][1].extend(p for p in m.group(1).split(", ") if p)
    return jobs


def tail(path: str | Path, n: int = 6) -> list[str]:
    """The last ``n`` non-empty lines of a text file (none if it is missing)."""
    try:
        lines = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
    return [line.rstrip() for line in lines if line.strip()][-n:]


def failure_lines(snakemake_log, cwd: str | Path | None = None) -> list[str]:
    """Each failed job's rule, the path of its log and that log's last lines (where the step said why)."""
    cwd = Path(cwd) if cwd is not None else Path.cwd()
    out = []
    for rule, logs in failed_jobs(snakemake_log):
        if not logs:
            out.append(f"failed: {rule} (no log file; see Snakemake's message above)")
        for log in logs:
            out.append(f"failed: {rule}; its log: {_shown(Path(log), cwd)}")
            out += [f"  | {line}" for line in tail(log)]
    if _logfile(snakemake_log):
        out.append(f"Snakemake's log of this run: {_shown(_logfile(snakemake_log), cwd)}")
    return out


def print_lines(lines: list[str], title: str) -> None:
    """A framed block on stderr, after Snakemake's own lines (which also go to stderr)."""
    import sys

    if not lines:
        return
    rule = "=" * min(100, max(len(title) + 8, 40))
    sys.stderr.write("\n".join([rule, title, *lines, rule]) + "\n")
    sys.stderr.flush()

