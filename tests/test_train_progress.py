"""Progress: a redrawn bar on a terminal, plain lines otherwise."""

from __future__ import annotations

import io

import pytest

from sparsebasin.errors import UserError
from sparsebasin.progress import EpochProgress, resolve_mode


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_auto_mode_follows_the_stream():
    assert resolve_mode("auto", FakeTTY()) == "bar"
    assert resolve_mode("auto", io.StringIO()) == "log"
    assert resolve_mode("log", FakeTTY()) == "log"
    with pytest.raises(UserError, match="progress"):
        resolve_mode("fancy")


def test_bar_redraws_in_place_and_log_writes_one_line():
    tty = FakeTTY()
    bar = EpochProgress("run epoch 1/2", 10, "auto", stream=tty, min_interval=0.0)
    for _ in range(10):
        bar.update(1, loss=0.5)
    bar.close("run epoch 1/2 done")
    text = tty.getvalue()
    assert text.count("\r") >= 10 and "10/10" in text and "loss=0.5" in text
    assert text.endswith("[sparsebasin] run epoch 1/2 done\n")

    plain = io.StringIO()
    bar = EpochProgress("run epoch 1/2", 10, "auto", stream=plain, min_interval=0.0)
    for _ in range(10):
        bar.update(1, loss=0.5)
    bar.close("run epoch 1/2 done")
    assert plain.getvalue() == "[sparsebasin] run epoch 1/2 done\n"
