"""The top-level CLI's help and version, as a newcomer first types them."""

from __future__ import annotations

from sparsebasin import __version__
from sparsebasin.cli import main


def test_help_is_plain_text(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "python -m sparsebasin <step>: one subcommand per pipeline step" in out and "``" not in out


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"sparsebasin {__version__}\n"


def test_preset_help_lists_the_presets(capsys):
    try:
        main(["sparse", "--help"])
    except SystemExit as exc:
        assert exc.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "one of dense, sparse, imp_ft," in out and "mnist1d_sparse" in out and "(default sparse)" in out
    assert "--lr LR learning rate (default: the preset's)" in out, out
