"""Ensemble metrics against numbers worked out by hand on tiny arrays."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from sparsebasin import cli, io
from sparsebasin.analysis.diversity import ensemble_metrics
from sparsebasin.errors import UserError

log = math.log


def kl(p, q):
    return sum(pi * log(pi / qi) for pi, qi in zip(p, q))


def js(p, q):
    m = [(pi + qi) / 2 for pi, qi in zip(p, q)]
    return 0.5 * kl(p, m) + 0.5 * kl(q, m)


# Two members, three test points, three classes; logits = log(probabilities).
A = [[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.5, 0.3, 0.2]]
B = [[0.6, 0.3, 0.1], [0.2, 0.5, 0.3], [0.1, 0.3, 0.6]]
LABELS = [0, 2, 2]


def test_two_members_three_classes_by_hand():
    m = ensemble_metrics([np.log(A), np.log(B)], np.array(LABELS))
    # A predicts 0, 2, 0 (right, right, wrong); B predicts 0, 1, 2 (right, wrong, right).
    assert m.member_acc == pytest.approx((2 / 3, 2 / 3))
    assert m.member_acc_mean == pytest.approx(2 / 3)
    assert m.member_acc_std == pytest.approx(0.0)
    # Mean softmax: [.65 .25 .10] -> 0, [.15 .40 .45] -> 2, [.30 .30 .40] -> 2: all right.
    assert m.ensemble_acc == pytest.approx(1.0)
    # Argmaxes differ on points 2 and 3.
    assert m.disagreement == pytest.approx(2 / 3)
    # KL: mean over points of the two directions' average (mean over ordered pairs).
    kl_ab = (kl(A[0], B[0]) + kl(A[1], B[1]) + kl(A[2], B[2])) / 3
    kl_ba = (kl(B[0], A[0]) + kl(B[1], A[1]) + kl(B[2], A[2])) / 3
    assert m.kl == pytest.approx((kl_ab + kl_ba) / 2, rel=1e-9)
    assert m.kl_one_way == pytest.approx(kl_ab, rel=1e-9)  # one direction, in member order (Table 1 caption)
    # Spot check of one term: KL(A1||B1) = .7 ln(.7/.6) + .2 ln(.2/.3) + .1 ln(1) = 0.02681...
    assert kl(A[0], B[0]) == pytest.approx(0.7 * log(7 / 6) + 0.2 * log(2 / 3), rel=1e-12)
    assert m.js == pytest.approx((js(A[0], B[0]) + js(A[1], B[1]) + js(A[2], B[2])) / 3, rel=1e-9)


def test_three_members_mean_softmax_is_not_a_majority_vote():
    # One point, label 0. Members: [.9 .1], [.45 .55], [.45 .55]. Majority says 1, mean softmax [.6 .4] says 0.
    p, q = [0.9, 0.1], [0.45, 0.55]
    m = ensemble_metrics([np.log([p]), np.log([q]), np.log([q])], np.array([0]))
    assert m.n == 3
    assert m.ensemble_acc == 1.0
    assert m.member_acc_mean == pytest.approx(1 / 3)
    # Sample std of (1, 0, 0): sqrt(((2/3)^2 + 2 (1/3)^2) / 2) = sqrt(1/3).
    assert m.member_acc_std == pytest.approx(math.sqrt(1 / 3))
    # Pairs (1,2), (1,3) disagree, (2,3) agree.
    assert m.disagreement == pytest.approx(2 / 3)
    # Ordered pairs: 12, 21, 13, 31 non-zero, 23, 32 zero.
    assert m.kl == pytest.approx((2 * kl(p, q) + 2 * kl(q, p)) / 6, rel=1e-9)
    assert m.js == pytest.approx(2 * js(p, q) / 3, rel=1e-9)


def test_invariant_to_logit_shift_and_chunking():
    rng = np.random.default_rng(0)
    logits = [rng.normal(size=(7, 4)) for _ in range(3)]
    labels = rng.integers(0, 4, size=7)
    ref = ensemble_metrics(logits, labels)
    shifted = ensemble_metrics([x + 100.0 for x in logits], labels, chunk_rows=2)
    for field in ("member_acc_mean", "ensemble_acc", "disagreement", "kl", "js"):
        assert getattr(shifted, field) == pytest.approx(getattr(ref, field), rel=1e-9, abs=1e-12)


def test_extreme_logits_stay_finite():
    # Near one-hot and opposite: KL ~ 1000 nats, JS -> ln 2; no inf or NaN.
    a = np.array([[1000.0, 0.0]], dtype=np.float32)
    b = np.array([[0.0, 1000.0]], dtype=np.float32)
    m = ensemble_metrics([a, b], np.array([0]))
    assert math.isfinite(m.kl) and m.kl == pytest.approx(1000.0, rel=1e-6)
    assert m.js == pytest.approx(log(2), rel=1e-6)
    same = ensemble_metrics([a, a.copy()], np.array([0]))
    assert same.kl == 0.0 and same.js == 0.0 and same.disagreement == 0.0


@pytest.mark.parametrize(
    "logits, labels, match",
    [
        ([np.zeros((2, 3))], [0, 1], "at least 2 members"),
        ([np.zeros((2, 3)), np.zeros((3, 3))], [0, 1], "same test set"),
        ([np.zeros((2, 3)), np.full((2, 3), np.nan)], [0, 1], "NaN"),
        ([np.zeros((2, 3)), np.zeros((2, 3))], [0, 3], r"\[0, 3\)"),
    ],
)
def test_bad_inputs_raise_user_error(logits, labels, match):
    with pytest.raises(UserError, match=match):
        ensemble_metrics(logits, np.array(labels))


def _save_predictions(path, probs, labels):
    io.save_artifact(path, "predictions", {
        "logits": torch.log(torch.tensor(probs, dtype=torch.float32)),
        "labels": torch.tensor(labels, dtype=torch.int64),
    })


def test_ensemble_step_writes_contract_json(tmp_path):
    _save_predictions(tmp_path / "a.pt", A, LABELS)
    _save_predictions(tmp_path / "b.pt", B, LABELS)
    out = tmp_path / "ens.json"
    code = cli.main(["ensemble", "--predictions", str(tmp_path / "a.pt"), str(tmp_path / "b.pt"),
                     "--group", "permuted", "--tag", "width=1", "--tag", "sparsity=0.9", "--out", str(out)])
    assert code == 0
    result = json.loads(out.read_text())
    assert set(result) == {"group", "n", "member_acc_mean", "member_acc_std", "ensemble_acc", "disagreement", "kl_one_way",
                           "kl", "js", "nonfinite", "health", "tags", "provenance"}
    assert result["health"] == {"status": "ok", "reasons": []}
    assert result["group"] == "permuted" and result["n"] == 2
    assert result["tags"] == {"width": "1", "sparsity": "0.9"}
    assert result["ensemble_acc"] == pytest.approx(1.0)
    assert result["disagreement"] == pytest.approx(2 / 3)
    assert result["provenance"]["config"]["predictions"] == [str(tmp_path / "a.pt"), str(tmp_path / "b.pt")]


def test_ensemble_step_rejects_different_test_sets(tmp_path, capsys):
    _save_predictions(tmp_path / "a.pt", A, LABELS)
    _save_predictions(tmp_path / "b.pt", B, [0, 1, 2])
    code = cli.main(["ensemble", "--predictions", str(tmp_path / "a.pt"), str(tmp_path / "b.pt"),
                     "--group", "g", "--out", str(tmp_path / "e.json")])
    assert code == 2
    err = capsys.readouterr().err
    assert "b.pt" in err and "same test set" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "e.json").exists()


def test_a_flagged_member_flags_the_ensemble(tmp_path):
    """A dead or diverged member (its result.json's health, beside its predictions) is named in the ensemble's
    health, so Table 1 marks it (issue 25, item 2)."""
    for name, probs, status in (("a", A, "ok"), ("b", B, "chance")):
        (tmp_path / name).mkdir()
        _save_predictions(tmp_path / name / "predictions.pt", probs, LABELS)
        reasons = [] if status == "ok" else ["the final test accuracy 10% is not above chance"]
        (tmp_path / name / "result.json").write_text(json.dumps({"health": {"status": status, "reasons": reasons}}))
    out = tmp_path / "ens.json"
    assert cli.main(["ensemble", "--predictions", str(tmp_path / "a/predictions.pt"),
                     str(tmp_path / "b/predictions.pt"), "--group", "naive", "--out", str(out)]) == 0
    health = json.loads(out.read_text())["health"]
    assert health["status"] == "chance" and len(health["reasons"]) == 1 and str(tmp_path / "b") in health["reasons"][0]
