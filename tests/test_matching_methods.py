"""A matching method is one function and one entry of symmetry.matching.METHODS (issue 26): the step runs a new
method with no other edit, and both built-in methods time what they do."""

from __future__ import annotations

import json

import pytest
import torch
from _pruning_data import init_checkpoint, make_data

from sparsebasin.cli import main
from sparsebasin.symmetry import matching


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("methods")
    make_data(root / "data")
    return root, init_checkpoint(root / "A.pt", seed=0), init_checkpoint(root / "B.pt", seed=1)


def _match(pair, method, out):
    root, a, b = pair
    return main(["match", "--a", str(a), "--b", str(b), "--dataset", "mnist1d", "--data-dir", str(root / "data"),
                 "--method", method, "--batches", "2", "--batch-size", "100", "--device", "cpu",
                 "--out", str(root / f"{out}.pt"), "--summary", str(root / f"{out}.json")])


def test_a_new_method_is_one_entry(pair, monkeypatch):
    def identity(job):
        """Identity: the units as they are (a control for alignment)."""
        return {g: torch.arange(n) for g, n in job.spec.sizes.items()}, {"method": "identity", "statistic": None}

    monkeypatch.setitem(matching.METHODS, "identity", matching.Method(identity, needs_data=False))
    assert _match(pair, "identity", "identity") == 0
    summary = json.loads((pair[0] / "identity.json").read_text(encoding="utf-8"))
    assert summary["method"] == "identity" and summary["seconds"] >= 0


@pytest.mark.parametrize("method", ["activation", "weight"])
def test_each_method_records_the_time_it_took(pair, method):
    assert _match(pair, method, method) == 0
    summary = json.loads((pair[0] / f"{method}.json").read_text(encoding="utf-8"))
    assert summary["method"] == method and summary["seconds"] > 0 and summary["mean_correlation"] is not None
