"""Headless Chromium for tests that look at what a user sees (Debian's `chromium`).

Installed with apt when missing and we are root; otherwise the test is
skipped, except under CI=true where a missing browser is a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def chromium() -> str:
    path = shutil.which("chromium")
    if path:
        return path
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, timeout=600)
        subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], env=env, capture_output=True, timeout=900)
        path = shutil.which("chromium")
        if path:
            return path
    reason = "headless Chromium is not available (apt-get install chromium)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true, but {reason}")
    pytest.skip(reason)


def dump_dom(page: Path, profile_dir: Path, budget_ms: int = 10_000) -> str:
    """The DOM of a local page after its scripts ran (no network: file:// only)."""
    res = subprocess.run(
        [chromium(), *FLAGS, f"--user-data-dir={profile_dir}", f"--virtual-time-budget={budget_ms}",
         "--dump-dom", page.resolve().as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout
