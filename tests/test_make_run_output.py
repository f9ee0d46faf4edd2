"""What a person sees from `make run` and from any `snakemake` run of the workflow.

`make run` shows jobs done of total and the running jobs' epochs (workflow/scripts/follow.py) instead of
Snakemake's ~950 lines of job blocks, and ends with the reproduction headline and the paths of summary.md,
the scorecard and report.html. A plain `snakemake` run ends with the same block (the Snakefile's
onsuccess); a failed one names the failed job's log and shows its last lines (onerror).
"""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
from default_run import HEADLINE, REPO, VENV_BIN, follow_command, run_env


def dry_make(*args: str) -> subprocess.CompletedProcess:
    """`make -n` as a person types it: `make test` runs this suite, and a make started under it would inherit
    MAKELEVEL/MAKEFLAGS and print "make[1]: Leaving directory" lines around the recipe."""
    env = {k: v for k, v in os.environ.items() if k not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS")}
    return subprocess.run(["make", "--no-print-directory", "-n", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=60, env=env)


def test_make_run_runs_the_follower_and_builds_the_report():
    res = dry_make("-o", ".venv/.installed", "run")
    assert res.returncode == 0, res.stderr
    recipe = res.stdout.strip().splitlines()[-1]
    assert re.search(r"python workflow/scripts/follow\.py --report report\.html -- \S*snakemake --cores all$", recipe), \
        recipe


def test_a_cpu_only_install_is_one_make_variable():
    plain = dry_make("-B", "install")
    cpu = dry_make("-B", "install", "TORCH_INDEX=https://download.pytorch.org/whl/cpu")
    assert "index-url" not in plain.stdout, plain.stdout
    assert "pip install --quiet -e . --extra-index-url https://download.pytorch.org/whl/cpu" in cpu.stdout, cpu.stdout
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "make run TORCH_INDEX=https://download.pytorch.org/whl/cpu" in readme and "5.9 GB" in readme


@pytest.mark.slow
def test_make_run_output_is_short_shows_progress_and_ends_with_the_headline(default_run):
    lines = default_run.output.splitlines()
    assert len(lines) < 120, f"{len(lines)} lines (Snakemake's own output is about 950)"
    status = [ln for ln in lines if re.match(r"^\[(\d+)/59 \d+%\] ", ln)]
    done = [int(re.match(r"^\[(\d+)/", ln).group(1)) for ln in status]
    assert len(status) >= 3 and done == sorted(done), status
    assert any(re.search(r"running: .*\(\S.* epoch \d+/\d+\)", ln) for ln in status), status
    assert "59 of 59 jobs done in" in default_run.output
    block = lines[lines.index("Results") + 1:]
    assert re.match("mnist1d: Reproduction: " + HEADLINE.pattern, block[0]), block
    paths = dict(re.match(r"^\s+(\w+):\s+(\S+)$", ln).groups() for ln in block[1:4])
    assert paths == {"summary": "results/mnist1d/summary.md", "scorecard": "results/mnist1d/tables/scorecard.md",
                     "report": "report.html"}, block
    assert all((default_run.workdir / p).is_file() for p in paths.values())


@pytest.mark.slow
def test_a_plain_snakemake_run_ends_with_the_headline(default_run):
    res = subprocess.run([str(VENV_BIN / "snakemake"), "-s", str(REPO / "Snakefile"), "--cores", "1", "-f",
                          "results/mnist1d/summary.md"], cwd=default_run.workdir, env=run_env(),
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:]
    lines = res.stdout.splitlines()
    block = lines[lines.index("Results") + 1:]
    assert re.match("mnist1d: Reproduction: " + HEADLINE.pattern, block[0]), res.stdout[-2000:]
    assert "  summary:   results/mnist1d/summary.md" in block and "  scorecard: results/mnist1d/tables/scorecard.md" in block
    assert "  report:    snakemake --report report.html  (then open report.html)" in block


def _failing(tmp_path: Path) -> tuple[list[str], dict]:
    """A run whose one job fails at once: CIFAR-10 is not on disk and the network refuses (a dead proxy)."""
    env = run_env()
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        env[var] = "http://127.0.0.1:9"
    env.pop("no_proxy", None), env.pop("NO_PROXY", None)
    return ["data/.sparsebasin/cifar10.prepared.json"], env


@pytest.mark.slow
def test_a_failed_run_names_the_failed_jobs_log_and_its_last_lines(tmp_path):
    targets, env = _failing(tmp_path)
    res = subprocess.run([str(VENV_BIN / "snakemake"), "-s", str(REPO / "Snakefile"), "--cores", "1", *targets],
                         cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)
    assert res.returncode != 0
    out = res.stdout
    assert "failed: download; its log: results/logs/data/download_cifar10.log" in out, out[-3000:]
    assert re.search(r"^  \| error: downloading cifar10 into data failed", out, flags=re.M), out[-3000:]

    # the same through make run's follower: Snakemake's error, then the same lines, and its exit status
    res = subprocess.run(follow_command("--cores", "1", *targets), cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, timeout=600)
    assert res.returncode == 1, res.stdout[-3000:]
    assert "Error in rule download" in res.stdout and "failed: download; its log:" in res.stdout
    assert re.search(r"snakemake failed \(exit 1\) after \S+; its full log: \S+\.snakemake\.log", res.stdout)
    assert "Results" not in res.stdout.splitlines()


FAKE = r'''
import sys, time
log = sys.argv[1]
print("Job stats:\njob count\n---- -----\ntrain 1\nall 1\ntotal 2\n", flush=True)
print("[Mon Jan  1 00:00:00 2026]\nrule train:\n    output: x\n    log: " + log + "\n    jobid: 1\n"
      "    reason: Missing output files: x\n    resources: tmpdir=/tmp", flush=True)
for epoch in (1, 2):
    with open(log, "a") as fh:
        fh.write(f"[sparsebasin] fused[3] epoch {epoch}/4 lr=0.1 train_loss=1.0 test_acc=[0.1 0.2 0.3] 1.0s\n")
    time.sleep(1.5)
print("[Mon Jan  1 00:00:03 2026]\nFinished jobid: 1 (Rule: train)\n1 of 2 steps (50%) done", flush=True)
time.sleep(1.5)
print("2 of 2 steps (100%) done\nComplete log(s): /nowhere/x.snakemake.log", flush=True)
'''


@pytest.mark.slow
def test_on_a_terminal_one_status_line_is_redrawn_with_the_running_jobs_epoch(tmp_path):
    """follow.py's terminal mode, against a stand-in for snakemake that prints its job blocks and progress."""
    fake = tmp_path / "fake_snakemake.py"
    fake.write_text(FAKE, encoding="utf-8")
    pid, fd = pty.fork()
    if pid == 0:  # the child: follow.py on a terminal
        os.chdir(tmp_path)
        os.execv(sys.executable, [sys.executable, str(REPO / "workflow/scripts/follow.py"), "--",
                                  sys.executable, str(fake), str(tmp_path / "train.log")])
    chunks, deadline = [], time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 1)
        if ready:
            try:
                data = os.read(fd, 4096)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
    _, status = os.waitpid(pid, 0)
    screen = b"".join(chunks).decode("utf-8", "replace")
    assert os.waitstatus_to_exitcode(status) == 0, screen
    assert re.search(r"\r\[0/2 0%\] \S+  running: train \(fused\[3\] epoch [12]/4\)", screen), screen
    assert "\r[1/2 50%]" in screen and "2 of 2 jobs done in" in screen, screen
    assert "Job stats" not in screen and "rule train:" not in screen, screen  # the job blocks stay in the log
