"""The matching method and B's matching epoch as axes of one experiment (issue 26, item 4): the plan side."""

from __future__ import annotations

import pytest
import yaml
from workflow_plan import REPO, plan_of

DEFAULT = yaml.safe_load((REPO / "config.yaml").read_text(encoding="utf-8"))


def _config(**match_and_sweep):
    cfg = yaml.safe_load(yaml.safe_dump(DEFAULT))
    cell = cfg["experiments"]["mnist1d"]["cells"][0]
    for key, value in match_and_sweep.items():
        section, name = key.split("__")
        cell[section][name] = value
    return cfg


def test_two_methods_and_two_matching_epochs_in_one_experiment():
    base = plan_of(DEFAULT)
    plan = plan_of(_config(match__method=["activation", "weight"], sweep__match_epochs=[5, 20],
                           sweep__branches=["lth", "naive", "permuted", "random", "signs"]))
    # adding a method or an epoch moves no finished run: the first method's runs keep their directories
    assert set(base.jobs["sparse"]) <= set(plan.jobs["sparse"]) and set(base.jobs["match"]) <= set(plan.jobs["match"])
    sweep = [j for j in plan.jobs["sparse"].values() if ("mnist1d", "sweep") in j.uses]
    perm = [j for j in sweep if j.spec["branch"] == "permuted"]
    others = [j for j in sweep if j.spec["branch"] != "permuted"]
    cells = {(j.width, j.spec["tags"]["seed"], j.spec["tags"]["sparsity"], j.spec["k"]) for j in perm}
    assert len(perm) == len(cells) * 2 * 2  # every (method, matching epoch)
    assert {(j.spec["tags"]["method"], j.spec["tags"]["match_epoch"]) for j in perm} == {
        ("activation", "5"), ("activation", "20"), ("weight", "5"), ("weight", "20")}
    assert all("method" not in j.spec["tags"] for j in others)  # they do not depend on the matching
    assert len(others) == len(cells) * 4
    for j in perm:  # each run uses its own method's matching, at its own epoch of B
        match = plan.jobs["match"][j.spec["perm"].rsplit("/", 1)[0]]
        assert match.spec["method"] == j.spec["tags"]["method"] and f"--method {match.spec['method']}" in plan.args(match)
        assert ("/early/e5" in j.spec["perm"]) == (j.spec["tags"]["match_epoch"] == "5")
    # LMC and the matches table per method
    lmc = list(plan.jobs["lmc"].values())
    assert {j.spec["tags"]["method"] for j in lmc} == {"activation", "weight"}
    matches = plan.tidy["mnist1d"]["matches"]
    assert sum("/match-" in f for f in matches) == 2 * len({f.split("/match-")[0] for f in matches})
    # B is kept at the earlier matching epoch
    dense_b = next(j for j in plan.jobs["dense"].values() if j.spec["net"] == "B")
    assert 5 in dense_b.spec["save_epochs"]


def test_one_method_keeps_todays_tags_and_a_bad_epoch_is_refused():
    plan = plan_of(DEFAULT)
    assert all("method" not in j.spec["tags"] for kind in ("sparse", "match", "lmc")
               for j in plan.jobs[kind].values())
    with pytest.raises(Exception, match=r"sweep.match_epochs contains 21, but it must be <= dense.epochs \(20\)"):
        plan_of(_config(sweep__match_epochs=[21]))
    with pytest.raises(Exception, match=r"match.method"):
        plan_of(_config(match__method=["activation", "cosine"]))
