"""Every command block in README.md and docs/*.md that is marked runnable runs, as written.

The marker is an HTML comment on the line before a fenced block:

    <!-- runnable -->             run each command as written
    <!-- runnable: dry-run -->    the same, with `-n` added to every `snakemake` command (a real run is too long)
    <!-- not runnable: WHY -->    never run (every ```bash block carries one of the three)

A block runs as one bash script (`set -euo pipefail`) from a scratch copy of the repository (symlinks, so
nothing is written into the checkout), with this venv as `.venv` and on PATH.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from snakemake_output import job_stats

REPO = Path(__file__).resolve().parents[1]
VENV = Path(sys.executable).parent.parent
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
MARKER = re.compile(r"^\s*<!-- (runnable(?:: dry-run)?|not runnable: [^>]+) -->\s*$")
FENCE = re.compile(r"^\s*```(\w*)\s*$")
KEEP_OUT = {".git", ".venv", "results", "data", ".snakemake", "report.html"}


def blocks() -> list[tuple[str, int, str, str, str]]:
    """(file, line, language, marker or "", code) of every fenced block."""
    out = []
    for doc in DOCS:
        lines = doc.read_text(encoding="utf-8").splitlines()
        i = 0
        while i < len(lines):
            m = FENCE.match(lines[i])
            if not m:
                i += 1
                continue
            j = i + 1
            while j < len(lines) and not FENCE.match(lines[j]):
                j += 1
            prev = lines[i - 1] if i else ""
            marker = MARKER.match(prev)
            out.append((doc.relative_to(REPO).as_posix(), i + 1, m.group(1), marker.group(1) if marker else "",
                        "\n".join(lines[i + 1:j])))
            i = j + 1
    return out


RUNNABLE = [b for b in blocks() if b[3].startswith("runnable")]


def test_every_bash_block_says_whether_it_runs():
    unmarked = [f"{f}:{n}" for f, n, lang, marker, _ in blocks() if lang in ("bash", "sh", "console") and not marker]
    assert not unmarked, f"mark these with <!-- runnable -->, <!-- runnable: dry-run --> or <!-- not runnable: why -->: {unmarked}"
    assert len(RUNNABLE) >= 3


def as_dry_run(code: str) -> str:
    return re.sub(r"^(\s*)snakemake(?![\w-])(?!.*(?:\s-n\b|--dry-run))", r"\1snakemake -n", code, flags=re.M)


def sandbox(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    for entry in REPO.iterdir():
        if entry.name not in KEEP_OUT:
            (root / entry.name).symlink_to(entry)
    (root / ".venv").symlink_to(VENV)
    return root


@pytest.mark.slow
@pytest.mark.parametrize("doc, line, lang, marker, code", RUNNABLE, ids=[f"{b[0]}:{b[1]}" for b in RUNNABLE])
def test_a_runnable_block_runs(tmp_path, doc, line, lang, marker, code):
    root = sandbox(tmp_path)
    script = as_dry_run(code) if marker == "runnable: dry-run" else code
    env = dict(os.environ, OMP_NUM_THREADS="1", PATH=f"{VENV / 'bin'}{os.pathsep}{os.environ['PATH']}")
    res = subprocess.run(["bash", "-c", "set -euo pipefail\n" + script], cwd=root, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, timeout=900)
    assert res.returncode == 0, f"{doc}:{line}\n{script}\n---\n{res.stdout[-4000:]}"
    assert not (root / "results").exists(), "a documented dry run wrote results"
    if "snakemake" in script and "--lint" not in script:
        assert job_stats(res.stdout) or "Nothing to be done" in res.stdout, res.stdout[-2000:]


def test_dry_run_marking():
    assert as_dry_run("snakemake --profile slurm -n\nsnakemake --cores all x") == \
        "snakemake --profile slurm -n\nsnakemake -n --cores all x"
    assert as_dry_run("source .venv/bin/activate   # snakemake later") == "source .venv/bin/activate   # snakemake later"


def test_the_documented_log_locations_are_where_the_jobs_log(tmp_path):
    """docs/cluster.md's list of log directories covers every job of the default DAG, and each is used."""
    text = (REPO / "docs/cluster.md").read_text(encoding="utf-8")
    section = text[text.index("<!-- log locations"):]
    section = section[:section.index("\n\n", section.index("\n- "))]
    documented = re.findall(r"^- `([^`]+)`", section, flags=re.M)
    assert documented, section
    patterns = [re.compile("^" + ".+".join(re.escape(part) for part in re.split(r"<[^>]+>", d))) for d in documented]
    env = dict(os.environ, OMP_NUM_THREADS="1", PATH=f"{VENV / 'bin'}{os.pathsep}{os.environ['PATH']}")
    res = subprocess.run([str(VENV / "bin/snakemake"), "-n", "-F", "--cores", "1"], cwd=sandbox(tmp_path), env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:]
    logs = {p for line in re.findall(r"^\s+log: (.+)$", res.stdout, flags=re.M) for p in line.split(", ")}
    assert len(logs) > 40, len(logs)
    unlisted = sorted(p for p in logs if not any(pat.match(p) for pat in patterns))
    assert not unlisted, f"logs outside the documented places: {unlisted[:5]}"
    unused = [d for d, pat in zip(documented, patterns) if not any(pat.match(p) for p in logs)]
    assert not unused, unused
