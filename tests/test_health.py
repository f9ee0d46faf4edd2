"""health.py: the criteria that mark a finished run dead (chance) or diverged (exploded loss)."""

import json
import math
import subprocess
import sys

import pytest

from sparsebasin import health, io


def test_binomial_sf_is_exact():
    assert health.binomial_sf(10, 10, 0.5) == pytest.approx(2 ** -10)
    assert health.binomial_sf(5, 10, 0.5) == pytest.approx(638 / 1024)
    assert health.binomial_sf(0, 10, 0.3) == 1.0
    assert health.binomial_sf(11, 10, 0.3) == 0.0
    # scipy.stats.binom.sf(1099, 10000, 0.1) = 5.2994e-4
    assert health.binomial_sf(1100, 10000, 0.1) == pytest.approx(5.2994e-4, rel=1e-3)


def test_chance_margin_follows_test_set_size():
    big = health.chance_threshold(10000, 0.1)
    small = health.chance_threshold(100, 0.1)
    assert 0.105 < big < 0.112 < small
    assert 0.19 < small < 0.23


def test_healthy_run_is_ok():
    h = health.assess(test_acc=0.91, test_loss=0.31, num_classes=10, n_test=10000)
    assert h == {"status": "ok", "reasons": []}
    # an overfit but trained model (test loss a few times ln K) is not "exploded"
    assert health.assess(test_acc=0.7, test_loss=5.0, num_classes=10, n_test=5000)["status"] == "ok"


def test_chance_accuracy_is_dead():
    h = health.assess(test_acc=0.1003, test_loss=2.302, num_classes=10, n_test=10000)
    assert h["status"] == "chance" and len(h["reasons"]) == 1 and "chance" in h["reasons"][0]
    # below chance is dead too
    assert health.assess(test_acc=0.02, test_loss=2.4, num_classes=10, n_test=10000)["status"] == "chance"


def test_collapse_to_the_majority_class_is_dead_on_imbalanced_test_sets():
    # SVHN-like: the most frequent class is 19.6% of the test set; 1/K = 10% would miss the collapse
    counts = [1744, 5099, 4149, 2882, 2523, 2384, 1977, 2019, 1660, 1595]
    n = sum(counts)
    h = health.assess(test_acc=5099 / n, test_loss=2.2, num_classes=10, n_test=n, class_counts=counts)
    assert h["status"] == "chance"
    assert health.assess(test_acc=5099 / n, test_loss=2.2, num_classes=10, n_test=n)["status"] == "ok"


def test_exploded_loss():
    h = health.assess(test_acc=0.1, test_loss=1e29, num_classes=10, n_test=10000)
    assert h["status"] == "exploded"
    assert len(h["reasons"]) == 2  # both criteria are listed
    assert health.assess(test_acc=0.8, test_loss=float("nan"), num_classes=10, n_test=100)["status"] == "exploded"
    assert health.assess(test_acc=0.8, test_loss=float("inf"), num_classes=10, n_test=100)["status"] == "exploded"
    assert health.assess(test_acc=0.8, test_loss=10 * math.log(10) + 0.1, num_classes=10,
                         n_test=100)["status"] == "exploded"
    # the limit grows with the number of classes
    assert health.assess(test_acc=0.5, test_loss=30.0, num_classes=1000, n_test=50000)["status"] == "ok"


def test_status_of_reads_back_and_defaults_to_ok():
    assert health.status_of({}) == "ok"
    assert health.status_of(None) == "ok"
    assert health.status_of({"health": {"status": "chance", "reasons": ["x"]}}) == "chance"
    assert health.status_of({"health": {"status": "exploded", "reasons": ["x"]}}) == "exploded"
    assert set(health.LABEL) == {"chance", "exploded", "nonfinite"}
    assert health.label_of("ok") is None
    line = health.warning_line("dense-A", {"status": "chance", "reasons": ["r1"]})
    assert line.startswith("warning: dense-A: dead (chance accuracy): r1")
    assert health.warning_line("x", {"status": "ok", "reasons": []}) is None


def test_nonfinite_paths_and_nulls_are_valid_json():
    obj = {"a": 1.0, "b": {"c": float("nan"), "d": [0.0, float("inf")]}, "e": "x"}
    assert health.nonfinite_paths(obj) == ["b.c", "b.d.1"]
    json.dumps(io.finite_or_none(obj), allow_nan=False)
    assert io.finite_or_none(obj)["b"] == {"c": None, "d": [0.0, None]}


def test_health_is_torch_free():
    code = "import sys, sparsebasin.health; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
