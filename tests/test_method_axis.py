"""Matching method and B's matching epoch are series keys (issue 26): tables, figures, the summary and the
scorecard never average two matchings together, and the scorecard compares only the paper's setting."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import _baselines_data as D
from sparsebasin.analysis import plots, scorecard, series, summary, tables, tidy
from sparsebasin.errors import UserError


def _perm_mean(runs: pd.DataFrame, method: str, epoch: int, s=0.9, k=10) -> float:
    sel = runs[(runs["branch"] == "permuted") & (runs["match_epoch"] == epoch) & (runs["sparsity"] == s)
               & (runs["k"] == k)]
    if "method" in runs.columns:
        sel = sel[sel["method"] == method]
    return 100 * sel["test_acc"].mean()


def test_series_keys_and_labels():
    runs = D.runs()
    assert series.keys(runs) == ["method", "match_epoch"]
    assert series.keys(D.runs(methods=("activation",), epochs=(D.T,))) == []  # today's tables: one series
    assert series.keys(D.runs(methods=("activation",))) == ["match_epoch"]
    assert series.ident("permuted", "weight", 5.0) == "permuted|weight|e5"
    assert series.parts("permuted|weight|e5") == {"branch": "permuted", "method": "weight", "match_epoch": 5.0}
    assert series.label_of("permuted|weight|e5") == "Permuted · weight matching, B at epoch 5"
    assert series.label_of("naive") == "Naive"
    # tags on runs that do not depend on the matching are blanked: naive stays one series
    tagged = series.assign(runs.assign(method="weight"))
    assert set(tagged.loc[tagged["branch"] == "naive", "series"]) == {"naive"}
    assert set(tagged.loc[tagged["branch"] == "permuted", "series"]) == {"permuted|weight|e5", "permuted|weight|e200"}


def test_accuracy_table_keeps_every_method_and_epoch_apart():
    runs = D.runs()
    frame, md = tables.accuracy_table(runs)
    cell = frame[(frame["branch"] == "permuted") & (frame["sparsity"] == 0.9) & (frame["k"] == 10)]
    assert len(cell) == 4 and (cell["n"] == 3).all()
    got = {(r.method, r.match_epoch): r.mean_pct for r in cell.itertuples()}
    for m in D.METHODS:
        for e in (D.EARLY, D.T):
            assert got[(m, float(e))] == pytest.approx(_perm_mean(runs, m, e))
    assert frame.loc[frame["branch"].isin(["lth", "naive", "signs", "random"]), "method"].isna().all()
    header = next(line for line in md.splitlines() if line.startswith("| Sparsity"))
    assert header == ("| Sparsity | k | LTH | Naive | Permuted · activation matching, B at epoch 5 | "
                      "Permuted · activation matching, B at epoch 200 | Permuted · weight matching, B at epoch 5 | "
                      "Permuted · weight matching, B at epoch 200 | Random mask | A's signs |")


def test_two_methods_at_one_epoch_are_two_columns_not_one_mean():
    """With one epoch nothing was refused before: two methods were silently averaged into one 'Permuted'."""
    runs = D.runs(epochs=(D.T,))
    frame, md = tables.accuracy_table(runs)
    cell = frame[(frame["branch"] == "permuted") & (frame["sparsity"] == 0.9) & (frame["k"] == 10)]
    assert sorted(cell["method"]) == ["activation", "weight"] and "match_epoch" not in frame.columns
    act = cell[cell["method"] == "activation"].iloc[0]
    assert act["mean_pct"] == pytest.approx(_perm_mean(runs, "activation", D.T)) and act["n"] == 3
    assert "| Permuted · activation matching | Permuted · weight matching |" in md


@pytest.mark.parametrize("kind,kw", [("accuracy_vs_rewind", {}), ("accuracy_vs_sparsity", {"ks": (10, 50)})])
def test_accuracy_figures_draw_one_line_per_matching(kind, kw):
    fig = plots.KINDS[kind](D.runs(), **kw)
    lines = {line.get_label(): line for ax in fig.axes for line in ax.get_lines()}
    act, weight = lines["Permuted · activation matching, B at epoch 200"], lines["Permuted · weight matching, B at epoch 200"]
    assert act.get_color() == weight.get_color() and act.get_linestyle() != weight.get_linestyle()
    early = lines["Permuted · activation matching, B at epoch 5"]
    assert early.get_color() != act.get_color() and early.get_markerfacecolor() == "none"
    assert "Permuted" not in lines  # never one line for all matchings
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend.index("Naive") < legend.index("Permuted · activation matching, B at epoch 5") < legend.index("Random mask")
    # x of the activation-at-T line, at one panel: its mean, not a blend of four matchings
    ax = next(a for a in fig.axes if a.get_title().endswith("S = 90%") or a.get_title().endswith("k = 10"))
    line = next(line for line in ax.get_lines() if line.get_label() == "Permuted · activation matching, B at epoch 200")
    ys = np.asarray(line.get_ydata(), dtype=float)
    assert np.isclose(ys, _perm_mean(D.runs(), "activation", D.T)).any()


def test_summary_compares_each_matching_with_lth_and_naive():
    runs = D.runs()
    per_k, averaged = summary.branch_comparison(runs)
    cell = per_k[(per_k["sparsity"] == 0.9) & (per_k["k"] == 10)]
    assert len(cell) == 4
    w = cell[(cell["method"] == "weight") & (cell["match_epoch"] == D.T)].iloc[0]
    assert w.diff_mean == pytest.approx(D.paired(("permuted", "weight", D.T), "naive").mean())
    assert w.naive == pytest.approx(100 * runs[(runs.branch == "naive") & (runs.sparsity == 0.9) & (runs.k == 10)]
                                    ["test_acc"].mean())
    md = summary.summary_markdown(runs, D.matches())
    assert "| Width | Sparsity | k | Matching | LTH | Naive | Permuted |" in md
    rows = [line for line in md.splitlines() if line.startswith("| ×1 | 90% | 10 |")]
    assert any("| activation matching, B at epoch 200 |" in r and r.endswith("| significant |") for r in rows)
    assert any("| weight matching, B at epoch 200 |" in r and r.endswith("| not significant |") for r in rows)
    # the headline count is the paper's setting only: activation matching of B at T beats naive in all 4 cells
    assert "Permuted > naive significant in 4 of 4 cells" in md


def test_scorecard_compares_only_the_paper_setting():
    runs = D.runs()
    card = scorecard.scorecard(runs)
    cells = card.cells
    assert "method" in cells.columns
    ref = cells[(cells["branch"] == "permuted") & cells["paper_mean"].notna() & (cells["sparsity"] == 0.9)
                & (cells["k"] == 10) & (cells["verdict"] != "not_run")]
    assert len(ref) == 1
    assert ref.iloc[0]["ours_mean"] == pytest.approx(_perm_mean(runs, "activation", D.T))
    assert ref.iloc[0]["method"] == "activation" and ref.iloc[0]["match_epoch"] == D.T
    others = cells[(cells["branch"] == "permuted") & cells["paper_mean"].isna() & (cells["verdict"] != "not_run")]
    assert len(others) == 3 * 4 and set(others["verdict"]) == {"no_reference"}
    assert {(r.method, r.match_epoch) for r in others.itertuples()} == {
        ("activation", D.EARLY), ("weight", D.EARLY), ("weight", D.T)}
    claim = card.claims[0]
    assert claim.name == "permuted > naive" and (claim.significant, claim.cells) == (4, 4)  # weight@T would fail
    md = scorecard.to_markdown(card)
    assert "Permuted · weight matching" in md and "stay out of the claims" in md
    assert card.other_series == ["activation matching, B at epoch 5", "weight matching, B at epoch 5",
                                 "weight matching, B at epoch 200"]


def test_the_paper_epoch_without_an_epochs_column_is_the_latest_matching_epoch():
    runs = D.runs(with_epochs_column=False)
    paper = series.is_paper(runs)
    perm = runs[paper & (runs["branch"] == "permuted")]
    assert set(perm["match_epoch"]) == {D.T} and set(perm["method"]) == {"activation"}
    card = scorecard.scorecard(runs)
    ref = card.cells[(card.cells["branch"] == "permuted") & card.cells["paper_mean"].notna()
                     & (card.cells["verdict"] != "not_run")]
    assert set(ref["match_epoch"]) == {D.T}


def test_a_sweep_matched_only_early_has_no_paper_cells():
    """B matched at epoch 5 only: the run's own T (k + epochs) is 200, so nothing is compared with the paper."""
    runs = D.runs(methods=("activation",), epochs=(D.EARLY,))
    assert not series.is_paper(runs)[runs["branch"] == "permuted"].any()
    card = scorecard.scorecard(runs)
    perm = card.cells[(card.cells["branch"] == "permuted") & (card.cells["verdict"] != "not_run")]
    assert set(perm["verdict"]) == {"no_reference"}
    assert card.claims[0].cells == 0  # no permuted run of the paper's setting to test


def test_collect_accepts_a_tag_that_repeats_the_files_own_field(tmp_path):
    """match summaries record 'method'; the plan tags it too when an experiment lists several methods."""
    path = tmp_path / "perm.json"
    path.write_text(json.dumps({"method": "weight", "seconds": 1.5, "mean_correlation": 0.5, "epoch_b": 200,
                                "tags": {"method": "weight", "match_epoch": "200", "seed": "0"}}), encoding="utf-8")
    table = tidy.collect([path])
    assert table.loc[0, "method"] == "weight" and table.loc[0, "seconds"] == 1.5
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"method": "weight", "tags": {"method": "activation"}}), encoding="utf-8")
    with pytest.raises(UserError, match="method clash"):
        tidy.collect([other])


def test_lmc_table_keeps_each_method_apart():
    rows = []
    for seed in (0, 1):
        for permuted, method, barrier in ((False, None, 0.8), (True, "activation", 0.1), (True, "weight", 0.3)):
            rows.append(dict(dataset="cifar10", model="resnet20", width=1, seed=seed, split="test", mode="plain",
                             permuted=permuted, method=method, loss_barrier=barrier + 0.01 * seed,
                             error_barrier=barrier / 10))
    frame, md = tables.lmc_table(pd.DataFrame(rows))
    perm = frame[frame["permuted"]].set_index("method")
    assert perm.loc["activation", "loss_barrier_mean"] == pytest.approx(0.105)
    assert perm.loc["weight", "loss_barrier_mean"] == pytest.approx(0.305)
    assert "Permuted · plain · weight matching" in md


def test_early_matching_table_keeps_each_method_apart():
    runs = D.runs()
    runs = runs[runs["k"] == 10]
    frame, md = tables.early_matching_table(runs, k=10)
    perm = frame[(frame["branch"] == "permuted") & (frame["sparsity"] == 0.9)]
    assert len(perm) == 4
    assert "| 5 (weight matching) |" in md and "| 200 (activation matching) |" in md


def _curves() -> pd.DataFrame:
    """LMC curves: naive once, permuted per method (its barrier 0.1 by activation, 0.3 by weight matching)."""
    rows = []
    for width in (1, 4):
        for seed in (0, 1):
            for permuted, method, bump in ((False, None, 0.8), (True, "activation", 0.1), (True, "weight", 0.3)):
                for alpha in (0.0, 0.5, 1.0):
                    loss = 0.5 + (bump / width if alpha == 0.5 else 0.0)
                    rows.append(dict(dataset="cifar10", model="resnet20", width=width, seed=seed, split="test",
                                     mode="plain", permuted=permuted, method=method, alpha=alpha, loss=loss,
                                     acc=0.9, error=0.1))
    return pd.DataFrame(rows)


def test_lmc_figure_and_summary_keep_each_method_apart():
    fig = plots.lmc_width(_curves())
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    assert "CIFAR-10 · ResNet20 · Permuted · plain · weight matching" in titles
    assert "CIFAR-10 · ResNet20 · Permuted · plain · activation matching" in titles
    bar_ax = next(ax for ax in fig.axes if ax.get_title().endswith("barrier vs width"))
    labels = {c.get_label() for c in bar_ax.containers}
    assert {"Permuted · plain · activation matching", "Permuted · plain · weight matching"} <= labels
    runs = D.runs(epochs=(D.T,))
    md = summary.summary_markdown(runs, barriers_table=_curves())
    assert "Loss barrier (Permuted · plain · weight matching)" in md
    # the main table's barrier column: each row its own method's barrier (0.1 / 0.3 at width 1)
    rows = [line for line in md.splitlines() if line.startswith("| ×1 | 90% | activation matching |")]
    assert rows and rows[0].endswith("| 0.100 ± 0.000 |")
    rows = [line for line in md.splitlines() if line.startswith("| ×1 | 90% | weight matching |")]
    assert rows and rows[0].endswith("| 0.300 ± 0.000 |")


def test_summary_early_matching_study_keeps_each_method_apart():
    early = D.runs()
    early = early[early["k"] == 10]
    card = scorecard.scorecard(D.runs(epochs=(D.T,)), early=early)
    md = summary.summary_markdown(D.runs(epochs=(D.T,)), card=card.as_dict())
    assert "| permuted, matched at epoch 5 (activation matching) |" in md
    line = next(x for x in md.splitlines() if x.startswith("| permuted, matched at epoch 5 (weight matching) |"))
    assert "no reference" in line  # weight matching is not the paper's Table 15
