"""Any cell setting from the command line for a quick trial (issue 27, item 5): `--config override=...`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from workflow_plan import REPO, plan_of

from sparsebasin.plan.config import ConfigError

DEFAULT = yaml.safe_load((REPO / "config.yaml").read_text(encoding="utf-8"))


def _cfg(override):
    return {**yaml.safe_load(yaml.safe_dump(DEFAULT)), "override": override}


def _sparse_dirs(plan):
    return {j.path.split("/sparse-")[1].split("/")[0] for j in plan.jobs["sparse"].values()}


def test_override_sets_every_cell_like_the_file_and_keys_follow():
    base = plan_of(DEFAULT)
    # strings, as Snakemake's --config parser leaves them, nested or dotted
    over = plan_of(_cfg({"sparse": {"lr": "0.04"}}))
    dotted = plan_of(_cfg({"sparse.lr": "0.04"}))
    cell = over.cells[0]
    assert cell.sparse["lr"] == 0.04 and isinstance(cell.sparse["lr"], float)
    assert _sparse_dirs(over) == _sparse_dirs(dotted) != _sparse_dirs(base)  # new sparse runs
    assert set(over.jobs["dense"]) == set(base.jobs["dense"])  # nothing else changes
    assert set(over.jobs["prune"]) == set(base.jobs["prune"]) and set(over.jobs["match"]) == set(base.jobs["match"])
    # the same edit in the file gives the same runs
    edited = yaml.safe_load(yaml.safe_dump(DEFAULT))
    edited["experiments"]["mnist1d"]["cells"][0]["sparse"]["lr"] = 0.04
    assert set(plan_of(edited).jobs["sparse"]) == set(over.jobs["sparse"])
    assert plan_of(_cfg({"sweep": {"sparsities": ["0.8"]}})).cells[0].section("sweep")["sparsities"] == [0.8]
    both = plan_of(_cfg({"sparse.batch_size": "64", "sparse": {"lr": "0.04"}})).cells[0].sparse  # either order
    assert (both["lr"], both["batch_size"]) == (0.04, 64)


@pytest.mark.parametrize("block, message", [
    ({"sparse": {"lrr": "0.04"}}, "unknown key 'override.sparse.lrr'"),
    ({"sparse.lr": "-1"}, "override.sparse.lr = -1"),
    ({"dense": {"epochs": "ten"}}, "override.dense.epochs = 'ten'"),
    ("lr=0.04", "override = 'lr=0.04': must be a mapping"),
    # one key spelt nested and dotted: refused, whichever comes first (order decided it before)
    ({"match": {"batches": "5"}, "match.batches": "6"}, "override.match.batches is given twice"),
    ({"match.batches": "6", "match": {"batches": "5"}}, "override.match.batches is given twice"),
])
def test_a_bad_override_is_one_line_naming_the_key(block, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("(", r"\(")):
        plan_of(_cfg(block))


@pytest.mark.slow
def test_the_documented_command_line_reaches_the_cells(tmp_path):
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    cmd = [str(Path(sys.executable).parent / "snakemake"), "-s", str(REPO / "Snakefile"), "--directory",
           str(tmp_path), "-n", "--quiet=rules", "--config", 'override={"sparse": {"lr": 0.04}}']
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    bad = subprocess.run(cmd[:-1] + ['override={"sparse": {"lrr": 0.04}}'], env=env, capture_output=True, text=True,
                         timeout=300)
    assert bad.returncode != 0 and "config error: unknown key 'override.sparse.lrr'" in bad.stderr, bad.stderr[-2000:]
