"""A real single-node SLURM cluster for tests, driven by ``local_slurm.sh``.

``local_slurm`` is a session-scoped pytest fixture: it brings the cluster up
(installing Debian's slurm-wlm + munge with apt when missing), yields a
``Cluster`` handle, and stops the daemons at the end of the session.

Several pytest sessions on one machine may share the cluster. Each holds a
shared ``flock`` on ``LOCK`` from before its bring-up until it is done;
``local_slurm.sh up`` and ``stop`` run under an exclusive ``flock`` on
``UP_LOCK`` (one at a time); and a session stops the daemons only if it can
then take ``LOCK`` exclusively, i.e. it is the last user (and
``SPARSEBASIN_SLURM_KEEP`` is not 1). A session that finds the cluster running
joins it without waiting for the others. ``cluster_session()`` is the same
protocol as a context manager, for fixtures of other scopes.

Skips only when the machine cannot host the cluster (not root, not Linux, no
apt-get and no Slurm installed). With ``CI=true`` those conditions fail the
test instead: CI runs as root and must exercise SLURM.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "local_slurm.sh"
# Overlay profile for the test cluster (no slurmdbd): layered after the real
# profile with a second ``--profile``; it overrides only the status polling.
TEST_PROFILE = HERE / "profile"
LOCK = Path("/tmp/sparsebasin-slurm.lock")  # shared while in use
UP_LOCK = Path("/tmp/sparsebasin-slurm.up.lock")  # exclusive around up/stop
DIR = Path(os.environ.get("SPARSEBASIN_SLURM_DIR", "/tmp/sparsebasin-slurm"))
SLURM_CONF = DIR / "etc" / "slurm.conf"
PACKAGES = ("slurmctld", "slurmd", "slurm-client", "munge")


def _installed(pkg: str) -> bool:
    try:
        out = subprocess.run(
            ["dpkg-query", "-W", "-f=${Status}", pkg], capture_output=True, text=True, timeout=30
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return "install ok installed" in out


def unavailable_reason() -> str | None:
    """Why this machine cannot run the local cluster, or None if it can."""
    if not sys.platform.startswith("linux"):
        return "the local SLURM cluster needs Linux"
    if os.geteuid() != 0:
        return "the local SLURM cluster needs root (it starts munged/slurmctld/slurmd and writes /etc/slurm)"
    if not shutil.which("dpkg-query"):
        return "the local SLURM cluster needs Debian's slurm-wlm packages (no dpkg here)"
    if not all(_installed(p) for p in PACKAGES) and not shutil.which("apt-get"):
        return "slurm-wlm/munge are not installed and apt-get is unavailable"
    etc = Path("/etc/slurm/slurm.conf")
    if (etc.exists() or etc.is_symlink()) and not (
        etc.is_symlink() and Path(os.readlink(etc)).parent in (SLURM_CONF.parent, SLURM_CONF.parent / "parked")
    ):
        return "/etc/slurm/slurm.conf belongs to a real Slurm installation; not replacing it"
    return None


def run_script(command: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``local_slurm.sh COMMAND``; raise with its output on failure."""
    proc = subprocess.run(
        ["bash", str(SCRIPT), command], capture_output=True, text=True, timeout=timeout, env=client_env()
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"local_slurm.sh {command} failed (rc={proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


def client_env(base: dict | None = None) -> dict:
    """Environment for Slurm clients and for snakemake runs against the cluster."""
    env = dict(os.environ if base is None else base)
    env["SLURM_CONF"] = str(SLURM_CONF)
    return env


@dataclass
class Cluster:
    """Handle on the running test cluster."""

    dir: Path
    bringup_seconds: float
    partitions: tuple[str, ...] = ("cpu", "gpu")
    default_partition: str = "cpu"
    gpu_type: str = "testgpu"
    log: str = ""
    env: dict = field(default_factory=client_env)

    def scontrol_job(self, job_id: str | int) -> dict[str, str]:
        """``scontrol show job -o ID`` as a dict (keys as Slurm prints them)."""
        out = subprocess.run(
            ["scontrol", "show", "job", "-o", str(job_id)],
            capture_output=True, text=True, timeout=30, env=self.env, check=True,
        ).stdout
        return parse_scontrol(out)

    def squeue_all(self, name: str | None = None) -> list[dict[str, str]]:
        """Every job slurmctld still knows (``squeue -t all``), optionally by job name."""
        cmd = ["squeue", "-t", "all", "-h", "-o", "%i|%j|%P|%T|%k"]
        if name:
            cmd += ["--name", name]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30, env=self.env, check=True).stdout
        rows = []
        for line in out.splitlines():
            jid, jname, part, state, comment = line.strip().split("|", 4)
            rows.append({"id": jid, "name": jname, "partition": part, "state": state, "comment": comment})
        return rows


def parse_scontrol(text: str) -> dict[str, str]:
    """Parse ``scontrol show job -o`` output (Key=Value pairs, space separated)."""
    fields: dict[str, str] = {}
    for token in text.split():
        key, sep, value = token.partition("=")
        if sep:
            fields[key] = value
    return fields


SUBMITTED = re.compile(r"Job (\d+) has been submitted with SLURM jobid (\d+) \(log: (.*?)\)\.")


def submitted_jobs(snakemake_log: str) -> list[dict[str, str]]:
    """The jobs the SLURM executor reports as submitted, from Snakemake's log."""
    return [
        {"snakemake_job": m.group(1), "slurm_id": m.group(2), "log": m.group(3)}
        for m in SUBMITTED.finditer(snakemake_log)
    ]


RUN_ID = re.compile(r"SLURM run ID: (\S+)")


def run_id(snakemake_log: str) -> str:
    m = RUN_ID.search(snakemake_log)
    if not m:
        raise AssertionError("no 'SLURM run ID' in the Snakemake log: did the slurm executor run at all?")
    return m.group(1)


# What a copy of the repository needs to run the workflow (the package itself
# is installed in the venv): everything but VCS data, venv, outputs, caches.
_IGNORE_ANYWHERE = shutil.ignore_patterns(".git", ".venv", ".snakemake", ".pytest_cache", "__pycache__", "*.egg-info",
                                          "report.html")
_IGNORE_AT_ROOT = {"results", "data", "tests", "benchmarks", ".ci"}  # (src/sparsebasin/data is the library's)


def _copy_ignore(root: Path):
    def ignore(directory: str, names: list[str]) -> set[str]:
        ignored = set(_IGNORE_ANYWHERE(directory, names))
        if Path(directory) == root:
            ignored |= _IGNORE_AT_ROOT & set(names)
        return ignored

    return ignore


def copy_workflow(repo: Path, dest: Path) -> Path:
    """Copy the repository's workflow files (Snakefile, workflow/, config*,
    profiles, slurm/) to DEST, so a test can run `snakemake` from a
    repository root without touching the real one."""
    shutil.copytree(repo, dest, ignore=_copy_ignore(Path(repo)), dirs_exist_ok=True)
    return dest


_BLOCK_KEYS = {
    # key in the EDIT block -> (line pattern in slurm/config.yaml, occurrence)
    "account": (r'^(\s+slurm_account:\s*)""', 0),
    "partition": (r'^(\s+slurm_partition:\s*)""', 0),
    "gpu_partition": (r'^(\s+slurm_partition:\s*)""', 1),
    "gpu_model": (r'^(\s+gpu_model:\s*)""', 0),
}


def edit_cluster_block(profile: Path, **values: str) -> str:
    """Fill in the EDIT block of a copy of slurm/config.yaml as a user would:
    replace the empty strings of slurm_account, slurm_partition (CPU steps),
    the GPU steps' slurm_partition and gpu_model. Fails if a line is missing,
    so the test notices when the block changes shape. Returns the new text."""
    lines = profile.read_text().splitlines(keepends=True)
    where = {}
    for key in values:  # locate every line first: editing changes the matches
        pattern, occurrence = _BLOCK_KEYS[key]
        hits = [i for i, line in enumerate(lines) if re.match(pattern, line)]
        if len(hits) <= occurrence:
            raise AssertionError(f"slurm/config.yaml: no line for {key} ({pattern}) in the EDIT block")
        where[key] = hits[occurrence]
    for key, value in values.items():
        i = where[key]
        lines[i] = re.sub(_BLOCK_KEYS[key][0], lambda m: f'{m.group(1)}"{value}"', lines[i])
    text = "".join(lines)
    profile.write_text(text)
    return text


def _flock(fd: int, mode: int, timeout: float = 900, what: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"waited {timeout:.0f}s for {what or LOCK}") from None
            time.sleep(0.2)


def skip_or_fail_if_unavailable() -> None:
    reason = unavailable_reason()
    if reason:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true, but the SLURM tests cannot run: {reason}")
        pytest.skip(reason)


@contextlib.contextmanager
def cluster_session():
    """Use the local cluster: bring it up (or join it), yield a ``Cluster``,
    stop it afterwards if no other session uses it."""
    users_fd = os.open(LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    up_fd = os.open(UP_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        # a user from before bring-up on, so no one stops it under our feet;
        # waits only while another session is stopping it
        _flock(users_fd, fcntl.LOCK_SH, 900, LOCK)
        _flock(up_fd, fcntl.LOCK_EX, 900, UP_LOCK)
        try:
            t0 = time.monotonic()
            proc = run_script("up")  # idempotent: on a running cluster a ~1 s check
            bringup = time.monotonic() - t0
        finally:
            fcntl.flock(up_fd, fcntl.LOCK_UN)
        _record("bringup_seconds", round(bringup, 2))
        yield Cluster(dir=DIR, bringup_seconds=bringup, log=proc.stderr)
    finally:
        try:
            if os.environ.get("SPARSEBASIN_SLURM_KEEP") != "1":
                _flock(up_fd, fcntl.LOCK_EX, 900, UP_LOCK)
                try:
                    # exclusive without waiting: only the last user gets it
                    fcntl.flock(users_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    pass  # another session still uses the cluster; it stops it
                else:
                    run_script("stop", timeout=120)
        finally:
            os.close(up_fd)
            os.close(users_fd)


@pytest.fixture(scope="session")
def local_slurm():
    """Bring up the local SLURM cluster for this session; stop it afterwards."""
    skip_or_fail_if_unavailable()
    with cluster_session() as cluster:
        yield cluster


def _record(key: str, value) -> None:
    """Append a measurement to $SPARSEBASIN_SLURM_DIR/measurements.jsonl (for reports)."""
    try:
        with open(DIR / "measurements.jsonl", "a") as f:
            f.write(json.dumps({"key": key, "value": value, "time": time.time()}) + "\n")
    except OSError:
        pass


record = _record
