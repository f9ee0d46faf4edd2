"""The baselines study's analysis (issue 26): the baselines table and figure, and summary.md's verdict on
which explanation of the transfer the tests support (synthetic tidy tables: five branches, two matching
methods, two epochs of B, three seeds)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import _baselines_data as D
from sparsebasin import cli
from sparsebasin.analysis import baselines, outputs, plots, scorecard, summary, tables
from sparsebasin.errors import UserError

ROOT = Path(__file__).resolve().parents[1]


def _row(frame, series_id, s=0.9, k=10):
    sel = frame[(frame["series"] == series_id) & (frame["sparsity"] == s) & (frame["k"] == k)]
    assert len(sel) == 1
    return sel.iloc[0]


def test_baselines_table_by_hand():
    from scipy import stats

    frame, md = baselines.baselines_table(D.runs(), D.matches())
    assert list(frame.columns[:11]) == ["experiment", "dataset", "model", "width", "sparsity", "k", "series", "branch",
                                        "method", "match_epoch", "label"]
    assert len(frame) == 2 * 2 * (4 + 4)  # (S, k) x (lth, naive, random, signs + 4 permuted series)
    for key, sid in ((("permuted", "weight", D.T), "permuted|weight|e200"), ("signs", "signs"),
                     ("random", "random"), ("lth", "lth")):
        d = D.paired(key, "naive")
        r = _row(frame, sid)
        assert r["vs_naive_mean_pp"] == pytest.approx(d.mean()) and r["vs_naive_std_pp"] == pytest.approx(d.std(ddof=1))
        assert r["vs_naive_n"] == 3
        assert r["vs_naive_p"] == pytest.approx(stats.ttest_1samp(d, 0.0, alternative="greater").pvalue)
    assert _row(frame, "permuted|activation|e200")["vs_naive_result"] == "significant"
    assert _row(frame, "permuted|weight|e200")["vs_naive_result"] == "not significant"
    assert _row(frame, "naive")["vs_naive_result"] == "reference"
    # time to find the permutation, per method and epoch of B, beside permuted only
    act = _row(frame, "permuted|activation|e200")
    assert (act["match_seconds_mean"], act["match_seconds_std"], act["match_seconds_n"]) == \
        pytest.approx((2.2, 0.2, 3))
    assert _row(frame, "permuted|weight|e5")["match_seconds_mean"] == pytest.approx(0.61)
    assert math.isnan(_row(frame, "signs")["match_seconds_mean"])
    assert "| 90% | 10 | Permuted · weight matching, B at epoch 200 | 88.60 ± 0.75 | +0.53 ± 0.50 | 0.103 | " \
           "not significant | 0.600 ± 0.100 |" in md
    assert "| 90% | 10 | Naive | 88.07 ± 0.25 |  |  | reference |  |" in md


def test_baselines_table_without_matches_and_with_one_method():
    frame, md = baselines.baselines_table(D.runs(methods=("activation",), epochs=(D.T,)))
    assert "match_seconds_mean" not in frame.columns and "π found in" not in md
    assert set(frame["series"]) == {"lth", "naive", "permuted", "random", "signs"}
    assert frame["method"].isna().all()


def test_baselines_table_uses_the_scorecards_test(monkeypatch):
    """One test for every claim: the baselines table calls scorecard.paired_test."""
    calls = []

    def fake(diffs):
        calls.append(np.asarray(diffs))
        return {"n": 9, "nonfinite": 0, "mean": 1.0, "std": 0.0, "t": 1.0, "p": 0.5, "result": "faked"}

    monkeypatch.setattr(scorecard, "paired_test", fake)
    frame, _ = baselines.baselines_table(D.runs())
    assert calls and set(frame.loc[frame["series"] != "naive", "vs_naive_result"]) == {"faked"}


def test_baselines_table_refuses_runs_without_sparse_branches():
    dense = D.runs()
    dense = dense[dense["branch"] == "dense"]
    with pytest.raises(UserError, match="sparse runs"):
        baselines.baselines_table(dense)


def test_baselines_figure_one_line_per_branch_and_method():
    fig = plots.baselines(D.runs(), D.matches())
    panels = [ax for ax in fig.axes if ax.get_visible() and ax.get_lines()]
    assert [ax.get_title() for ax in panels] == ["CIFAR-10 · ResNet20 ×1 · k = 10", "CIFAR-10 · ResNet20 ×1 · k = 50"]
    lines = {line.get_label(): line for line in panels[0].get_lines()}
    act = lines["Permuted · activation matching, B at epoch 200 (π in 2.2 s)"]
    weight = lines["Permuted · weight matching, B at epoch 200 (π in 0.6 s)"]
    assert act.get_color() == weight.get_color() and act.get_linestyle() == "-" and weight.get_linestyle() == "--"
    signs, rnd = lines["A's signs"], lines["Random mask"]
    assert signs.get_marker() == "P" and rnd.get_marker() == "v"  # the records' styles
    assert list(act.get_xdata()) == [90.0, 95.0]
    assert act.get_ydata()[0] == pytest.approx(_row(baselines.baselines_table(D.runs())[0],
                                                    "permuted|activation|e200")["mean_pct"])
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend[:3] == ["Dense", "LTH", "Naive"] and legend[-2:] == ["Random mask", "A's signs"]


def test_baselines_figure_with_two_settings_gives_times_in_each_rows_title():
    runs = pd.concat([D.runs(), D.runs().assign(width=4.0)], ignore_index=True)
    matches = pd.concat([D.matches(), D.matches().assign(width=4.0, seconds=9.0)], ignore_index=True)
    fig = plots.baselines(runs, matches, ks=[10])
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    assert titles[0].startswith("CIFAR-10 · ResNet20 ×1 · k = 10\nπ found in activation, B@5 2.2 s")
    assert "weight, B@200 9 s" in titles[1]


def test_table_and_figure_cli(tmp_path):
    runs, matches = tmp_path / "runs.csv", tmp_path / "matches.csv"
    D.runs().to_csv(runs, index=False)
    D.matches().to_csv(matches, index=False)
    out_csv, out_md = tmp_path / "baselines.csv", tmp_path / "baselines.md"
    assert cli.main(["table", "--kind", "baselines", "--table", str(runs), "--matches", str(matches),
                     "--out-csv", str(out_csv), "--out-md", str(out_md)]) == 0
    frame = pd.read_csv(out_csv)
    assert "match_seconds_mean" in frame.columns and len(frame) == 32
    prov = json.loads(outputs.sidecar_path(out_csv).read_text(encoding="utf-8"))["config"]
    assert prov["kind"] == "baselines" and prov["matches"] == str(matches)
    pdf, png = tmp_path / "b.pdf", tmp_path / "b.png"
    assert cli.main(["figure", "--kind", "baselines", "--table", str(runs), "--matches", str(matches),
                     "--out", str(pdf), "--png", str(png)]) == 0
    assert pdf.read_bytes().startswith(b"%PDF-") and png.stat().st_size > 0
    # --matches belongs to the baselines kinds only
    assert cli.main(["table", "--kind", "accuracy", "--table", str(runs), "--matches", str(matches),
                     "--out-csv", str(tmp_path / "a.csv"), "--out-md", str(tmp_path / "a.md")]) == 2
    assert cli.main(["figure", "--kind", "accuracy_vs_rewind", "--table", str(runs), "--matches", str(matches),
                     "--out", str(tmp_path / "a.pdf")]) == 2


def test_the_kinds_and_their_caption_exist():
    assert "baselines" in plots.KINDS and "baselines" in tables.KINDS
    caption = (ROOT / "workflow" / "report" / "baselines.rst").read_text(encoding="utf-8")
    assert "random mask" in caption and "A's signs" in caption and "paired by seed" in caption


# ---------------------------------------------------------------- which explanation (summary.md)


@pytest.mark.parametrize("results,expected", [
    (("significant", "significant", "significant"), "alignment"),
    (("significant", "not significant", "significant"), "alignment"),
    (("significant", "significant", "not significant"), "signs"),
    (("not significant", "significant", "not significant"), "signs"),
    (("not significant", "not significant", "not significant"), "neither"),
    (("not significant", "not significant", "significant"), "neither"),
    (("significant", "not significant", "not significant"), "undecided"),
    (("significant", "too few seeds", "significant"), "not tested"),
    (("significant", None, "significant"), "not tested"),
])
def test_the_rule(results, expected):
    assert baselines.supports(dict(zip(baselines.DECIDING, results))) == expected


def test_verdict_names_an_explanation_only_when_every_cell_agrees():
    def cells(*supports):
        return pd.DataFrame({"supports": list(supports)})

    assert baselines.verdict(cells("alignment", "alignment")).startswith(
        "Permuted beats both naive and A's signs significantly in all 2 tested cells: alignment, not the signs")
    assert "the signs carry the transfer" in baselines.verdict(cells("signs", "signs", "not tested"))
    assert "(1 cell with too few seeds" in baselines.verdict(cells("signs", "signs", "not tested"))
    mixed = baselines.verdict(cells("alignment", "signs", "neither"))
    assert mixed.startswith("The cells are mixed (alignment in 1, signs in 1, neither in 1 of 3 tested cells)")
    assert "no single explanation" in mixed
    assert baselines.verdict(cells("not tested")).startswith("No cell could be tested")


def test_summary_states_which_explanation_the_numbers_support():
    md = summary.summary_markdown(D.runs(), D.matches())
    assert "## Which explanation the numbers support" in md
    assert "Alignment (permuted) vs A's signs vs random mask vs naive." in md
    assert baselines.RULE in md
    assert ("**Permuted · activation matching, B at epoch 200:** Permuted beats both naive and A's signs "
            "significantly in all 4 tested cells: alignment, not the signs, carries the transfer.") in md
    assert ("**Permuted · weight matching, B at epoch 200:** A's signs beat naive significantly and permuted does "
            "not beat A's signs in all 4 tested cells") in md
    assert "naive beats a random mask of the same per-layer density significantly in 4 of 4 tested cells" in md
    counts = [line for line in md.splitlines() if line.startswith("| A's signs > Naive |")]
    assert len(counts) == 1 and "| 4 | 0 | 0 | 4 of 4 |" in counts[0]  # signs > naive: once, not per matching
    cell = next(line for line in md.splitlines() if line.startswith("| CIFAR-10 · ResNet20 ×1 | 90% | 10 | weight "
                                                                      "matching, B at epoch 200 |"))
    assert cell.endswith("| signs |") and "+0.03 (p = 0.455) not significant" in cell


def test_summary_one_matching_signs_and_no_random():
    md = summary.summary_markdown(D.runs(methods=("activation",), epochs=(D.T,),
                                         branches=("lth", "naive", "permuted", "signs")))
    assert "Alignment (permuted) vs A's signs vs naive." in md
    assert "**Verdict:** Permuted beats both naive and A's signs significantly in all 4 tested cells" in md
    assert "Random mask:" not in md and "Permuted series" not in md


def test_summary_random_only_gives_no_alignment_verdict():
    md = summary.summary_markdown(D.runs(methods=("activation",), epochs=(D.T,),
                                         branches=("lth", "naive", "permuted", "random")))
    assert "alignment and the signs cannot be told apart here: no verdict" in md
    assert "significantly in 4 of 4 tested cells" in md


def test_summary_without_controls_has_no_such_section():
    md = summary.summary_markdown(D.runs(methods=("activation",), epochs=(D.T,),
                                         branches=("lth", "naive", "permuted")))
    assert "Which explanation" not in md and "Matching" not in md
