"""summary.md: permuted − naive, gap closed, correlation and barrier beside them."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from sparsebasin import cli
from sparsebasin.analysis.summary import branch_comparison, gap_closed, summary_markdown
from sparsebasin.errors import UserError

# (seed, k) -> (lth, naive, permuted) test accuracy, width 4, sparsity 0.9.
ACCS = {
    (0, 10): (0.90, 0.80, 0.85),
    (1, 10): (0.90, 0.82, 0.88),
    (0, 50): (0.92, 0.80, 0.86),
    (1, 50): (0.92, 0.80, 0.86),
}


def _runs(width=4) -> pd.DataFrame:
    rows = []
    for (seed, k), accs in ACCS.items():
        for branch, acc in zip(("lth", "naive", "permuted"), accs):
            rows.append(dict(experiment="cifar10_resnet20", dataset="cifar10", model="resnet20", width=width,
                             seed=seed, sparsity=0.9, k=k, branch=branch, test_acc=acc))
    rows.append(dict(experiment="cifar10_resnet20", dataset="cifar10", model="resnet20", width=width, seed=0,
                     sparsity=None, k=None, branch="dense", test_acc=0.95))
    return pd.DataFrame(rows)


def test_gap_closed_and_its_guard():
    assert gap_closed(90.0, 80.0, 85.0) == pytest.approx(0.5)
    assert gap_closed(90.0, 80.0, 80.0) == 0.0
    assert math.isnan(gap_closed(80.05, 80.0, 81.0))  # gap below 0.1 pp
    assert math.isnan(gap_closed(79.0, 80.0, 81.0))  # LTH below naive
    assert math.isnan(gap_closed(90.0, float("nan"), 81.0))


def test_branch_comparison_by_hand():
    per_k, averaged = branch_comparison(_runs())
    k10 = per_k[per_k["k"] == 10].iloc[0]
    # naive 80, 82 -> 81; permuted 85, 88 -> 86.5; paired diffs 5, 6 -> 5.5 ± 0.707
    assert (k10.lth, k10.naive, k10.permuted) == pytest.approx((90.0, 81.0, 86.5))
    assert k10.diff_mean == pytest.approx(5.5) and k10.diff_std == pytest.approx(math.sqrt(0.5)) and k10.diff_n == 2
    assert k10.gap_closed == pytest.approx(5.5 / 9.0)
    row = averaged.iloc[0]
    # over k: lth (90+92)/2 = 91, naive (81+80)/2 = 80.5, permuted (86.5+86)/2 = 86.25
    assert (row.lth, row.naive, row.permuted) == pytest.approx((91.0, 80.5, 86.25))
    # per seed over k: seed0 (5+6)/2 = 5.5, seed1 (6+6)/2 = 6 -> 5.75 ± 0.354
    assert row.diff_mean == pytest.approx(5.75) and row.diff_std == pytest.approx(math.sqrt(0.125))
    assert row.gap_closed == pytest.approx(5.75 / 10.5)


def test_summary_markdown_with_matches_and_barriers():
    matches = pd.DataFrame([dict(dataset="cifar10", model="resnet20", width=4, seed=s, mean_correlation=c)
                            for s, c in [(0, 0.6), (1, 0.7)]])
    bars = pd.DataFrame([dict(dataset="cifar10", model="resnet20", width=4, seed=s, mode=m, permuted=p, split="test",
                              loss_barrier=b, error_barrier=b / 10)
                         for s in (0, 1) for m, p, b in [("plain", False, 2.0), ("plain", True, 0.5), ("repair", True, 0.1 + s / 10)]])
    text = summary_markdown(_runs(), matches, bars)
    assert "# Summary: cifar10_resnet20" in text
    # no scorecard here: the summary says the one count itself
    assert "Permuted > naive significant in 2 of 2 cells (one-sided paired t-test over seeds, α = 0.05)." in text
    assert text.count("significant in") == 1
    assert "| ×4 | 90% | 91.00 | 80.50 | 86.25 | +5.75 ± 0.35 | 55% | 0.650 ± 0.071 | 0.150 ± 0.071 |" in text
    assert "Loss barrier (Permuted · REPAIR)" in text
    assert "| ×4 | 90% | 10 | 90.00 | 81.00 | 86.50 | +5.50 ± 0.71 | 61% | 0.0289 | significant |" in text
    assert "| Width | Dense acc. (%) | Matched corr. | Loss barrier (Unpermuted · plain) |" in text
    assert "| ×4 | 95.00 (n=1) | 0.650 ± 0.071 | 2.000 ± 0.000 | 0.500 ± 0.000 | 0.150 ± 0.071 |" in text


def test_comparison_needs_naive_and_permuted():
    runs = _runs()
    with pytest.raises(UserError, match="naive and permuted"):
        branch_comparison(runs[runs["branch"] != "permuted"])


def test_summary_without_sweep_still_reports_per_width():
    runs = _runs()
    dense_only = runs[runs["branch"] == "dense"]
    curves = pd.DataFrame([dict(alpha=a, mode="plain", permuted=True, split="test", loss=l, error=0.1, width=4, seed=0,
                                dataset="cifar10", model="resnet20") for a, l in [(0, 1.0), (0.5, 2.0), (1, 1.0)]])
    text = summary_markdown(dense_only, barriers_table=curves)
    assert "no naive/permuted sweep" in text
    assert "| ×4 | 95.00 (n=1) | 1.000 (n=1) |" in text


def test_summary_cli(tmp_path):
    src = tmp_path / "runs.csv"
    _runs().to_csv(src, index=False)
    out = tmp_path / "summary.md"
    assert cli.main(["summary", "--runs", str(src), "--out", str(out)]) == 0
    text = out.read_text()
    assert text.startswith("<!-- provenance: ") and "Gap closed" in text and "Matched corr." not in text


def test_summary_gives_the_sparsity_over_all_weights_too():
    runs = _runs()
    runs["sparsity_all_weights"] = [0.829 if s == 0.9 else None for s in runs["sparsity"]]
    text = summary_markdown(runs)
    assert "90% (82.9%)" in text and "over all conv and linear weights" in text
