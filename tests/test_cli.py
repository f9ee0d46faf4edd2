"""The CLI entry point: every step has --help; unknown steps fail in one line."""

import subprocess
import sys

import pytest

from sparsebasin.cli import STEPS, main


def test_unknown_step(capsys):
    assert main(["nope"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown step 'nope'") and err.count("\n") == 1


def test_top_level_help_lists_steps(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for step in STEPS:
        assert step in out


@pytest.mark.parametrize("step", sorted(STEPS))
def test_every_step_has_help(step, capsys):
    with pytest.raises(SystemExit) as exc:
        main([step, "--help"])
    assert exc.value.code == 0
    assert f"usage: sparsebasin {step}" in capsys.readouterr().out


def test_module_entry_point():
    r = subprocess.run([sys.executable, "-m", "sparsebasin", "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "train" in r.stdout
