"""Diverged and dead runs, and non-finite values, shown as such wherever results are read (issue 25.1-25.2).

Synthetic files in the write side's contract: result.json carries
``"health": {"status": "ok" | "chance" | "exploded", "reasons": [...]}`` (missing: ok);
barriers.json holds null for a non-finite value and ``"nonfinite": {"<dotted path>": "<reason>"}``;
curve CSVs have empty cells for non-finite values.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from sparsebasin import cli
from sparsebasin.analysis import barriers, plots, tables, tidy
from sparsebasin.analysis.scorecard import scorecard, to_markdown
from sparsebasin.analysis.summary import summary_markdown

DEAD = "the final test accuracy 10.00% on 100 examples is not significantly above chance (10.00%)"


def _result(path, branch, seed, acc, k=4, health=None):
    tags = {"experiment": "e", "dataset": "mnist1d", "model": "mlp", "width": "1", "seed": str(seed), "branch": branch}
    if branch != "dense":
        tags.update(sparsity="0.9", k=str(k))
    obj = {"run": path.parent.name, "tags": tags, "test_acc": acc, "test_top5": 1.0, "test_loss": 0.5,
           "density": 0.1, "provenance": {}}
    if health is not None:
        obj["health"] = health
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj), encoding="utf-8")
    return str(path)


def _runs_files(tmp_path):
    files = []
    for seed in range(3):
        files.append(_result(tmp_path / f"d{seed}/result.json", "dense", seed, 0.9))
        for b, acc in (("lth", 0.8), ("naive", 0.6), ("permuted", 0.7)):
            dead = b == "naive" and seed == 0
            health = {"status": "chance", "reasons": [DEAD]} if dead else ({"status": "ok", "reasons": []}
                                                                           if seed == 1 else None)
            files.append(_result(tmp_path / f"{b}{seed}/result.json", b, seed, 0.1 if dead else acc + seed / 100,
                                 health=health))
    return files


def test_collect_gives_runs_a_health_column(tmp_path):
    table = tidy.collect(_runs_files(tmp_path))
    assert set(table["health"]) == {"ok", "chance"}  # a result.json without the key (older runs) is ok
    dead = table[table["health"] == "chance"]
    assert len(dead) == 1 and dead.iloc[0]["branch"] == "naive" and dead.iloc[0]["health_reasons"] == DEAD
    assert "health.status" not in table.columns


def test_barriers_json_nulls_land_on_their_row_with_the_reason(tmp_path):
    path = tmp_path / "barriers.json"
    records = [{"mode": m, "permuted": p, "split": "test", "loss_barrier": None if m == "repair" and p else 0.2,
                "error_barrier": 0.01} for m in ("plain", "repair") for p in (False, True)]
    path.write_text(json.dumps({"barriers": records, "nonfinite": {"barriers.3.loss_barrier": "REPAIR loss is NaN at α = 0.5"},
                                "tags": {"width": "1", "seed": "0"}}), encoding="utf-8")
    table = tidy.collect([path])
    bad = table[table["nonfinite"].notna()]
    assert len(bad) == 1 and bad.iloc[0]["mode"] == "repair" and bool(bad.iloc[0]["permuted"])
    assert bad.iloc[0]["nonfinite"] == "loss_barrier: REPAIR loss is NaN at α = 0.5"
    assert np.isnan(bad.iloc[0]["loss_barrier"])
    assert not any(c.startswith("nonfinite.") for c in table.columns)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_non_finite_curve_point_gives_a_nan_barrier_with_its_reason(bad):
    curve = pd.DataFrame({"alpha": [0, 0.5, 1], "mode": "repair", "permuted": True, "split": "test", "seed": 0,
                          "loss": [0.3, bad, 0.3], "error": [0.1, 0.2, 0.1]})
    row = barriers.barriers_from_curves(curve).iloc[0]
    assert np.isnan(row["loss_barrier"]) and row["error_barrier"] == pytest.approx(0.1)
    assert row["nonfinite"] == "loss_barrier: loss is non-finite at α = 0.5"
    assert np.isnan(barriers.barrier(np.array([0, 0.5, 1.0]), np.array([0.3, bad, 0.3])))


def _lmc_curves() -> pd.DataFrame:
    rows = []
    for w in (1, 2):
        for seed in (0, 1):
            for p in (False, True):
                for mode in ("plain", "repair"):
                    for a in (0.0, 0.5, 1.0):
                        loss = np.nan if mode == "repair" and w == 1 else 0.3 + a * (1 - a)
                        rows.append(dict(alpha=a, mode=mode, permuted=p, split="test", loss=loss, acc=0.9, error=0.1,
                                         seed=seed, dataset="imagenet", model="resnet50", width=w))
    return pd.DataFrame(rows)


def test_lmc_table_prints_diverged_never_the_not_run_mark():
    frame, md = tables.lmc_table(_lmc_curves())
    row = "| ×1 | 0.250 ± 0.000 | diverged †1 | 0.250 ± 0.000 | diverged †2 |"
    assert row in md
    assert "†1 ×1, Unpermuted · REPAIR: 2 of 2 values diverged (non-finite), left out of the mean" in md
    assert tidy.FLAG_RULE in md
    bad = frame[(frame["width"] == 1) & (frame["mode"] == "repair")]
    assert (bad["loss_barrier_n_nonfinite"] == 2).all() and bad["loss_barrier_mean"].isna().all()
    assert (bad["n"] == 2).all()  # the seeds are still counted in the cell


def test_accuracy_table_marks_a_cell_with_a_dead_run(tmp_path):
    frame, md = tables.accuracy_table(tidy.collect(_runs_files(tmp_path)))
    assert "| 90% | 4 | 81.00 ± 1.00 | 44.33 ± 29.74 †1 | 71.00 ± 1.00 |" in md
    assert "†1 S = 90%, k = 4, Naive: 1 of 3 runs dead (chance accuracy)." in md
    naive = frame[frame["branch"] == "naive"].iloc[0]
    assert naive["n_flagged"] == 1 and naive["n"] == 3 and naive["flags"] == "1 of 3 runs dead (chance accuracy)"


def test_a_non_finite_run_value_is_counted_not_dropped():
    runs = pd.DataFrame([dict(dataset="mnist1d", model="mlp", width=1, seed=s, sparsity=0.9, k=4, branch="lth",
                              test_acc=np.nan if s == 2 else 0.8, health="exploded" if s == 2 else "ok")
                         for s in range(3)])
    frame, md = tables.accuracy_table(runs)
    r = frame.iloc[0]
    assert (r["n"], r["n_nonfinite"], r["n_flagged"]) == (2, 1, 1)
    assert "1 of 3 runs diverged (exploded loss); 1 of 3 values diverged (non-finite), left out of the mean" in md
    card = scorecard(runs)
    assert card.cells.iloc[0]["n_nonfinite"] == 1


def test_early_matching_and_diversity_tables_mark_flags():
    runs = pd.DataFrame([dict(dataset="cifar10", model="resnet20", width=1, seed=s, sparsity=0.8, k=20, branch=b,
                              match_epoch=5 if b == "permuted" else np.nan, test_acc=0.9,
                              health="chance" if (b == "permuted" and s == 1) else "ok")
                         for s in range(3) for b in ("lth", "naive", "permuted")])
    _, md = tables.early_matching_table(runs)
    assert "| 5 | 90.00 ± 0.00 †1 |" in md and "1 of 3 runs dead (chance accuracy)" in md
    ens = pd.DataFrame([dict(dataset="cifar10", model="resnet20", width=1, sparsity=0.9, k=20, group=g, branch=g, n=5,
                             member_acc_mean=0.9, member_acc_std=0.01, ensemble_acc=0.91, disagreement=0.1, kl=0.2,
                             js=0.05, health="chance" if g == "naive" else "ok",
                             health_reasons="member 3 is dead" if g == "naive" else None)
                        for g in ("lth", "naive")])
    _, md = tables.diversity_table(ens)
    assert "| Naive †1 | 5 |" in md and "†1 Naive: dead (chance accuracy) (member 3 is dead)." in md


def test_scorecard_and_summary_say_which_runs_are_flagged(tmp_path):
    runs = tidy.collect(_runs_files(tmp_path))
    card = scorecard(runs)
    naive = card.cells[card.cells["branch"] == "naive"].iloc[0]
    assert naive["n_flagged"] == 1 and naive["flags"] == "1 of 3 runs dead (chance accuracy)"
    assert "; 1 of our cells flagged † (runs dead or diverged, or values non-finite); " in card.headline()
    md = to_markdown(card)
    assert "44.33 ± 29.74 (n=3) †1" in md and "†1 MNIST-1D MLP ×1 · S = 90% · k = 4 · Naive · test_acc: 1 of 3 runs" in md
    text = summary_markdown(runs, card=card.as_dict())
    assert "### Runs flagged dead or diverged (†)" in text
    assert f"- MNIST-1D · MLP ×1 · S = 90% · k = 4 · Naive · seed 0: dead (chance accuracy): {DEAD}" in text
    assert tidy.FLAG_RULE in text and text.count(tidy.FLAG_RULE) == 1


def test_scorecard_json_stays_valid_json_with_non_finite_numbers(tmp_path):
    runs = pd.DataFrame([dict(experiment="e", dataset="mnist1d", model="mlp", width=1, seed=s, sparsity=0.9, k=4,
                              branch=b, test_acc=np.nan if (b == "naive" and s == 0) else 0.8,
                              health="exploded" if (b == "naive" and s == 0) else "ok")
                         for s in range(2) for b in ("lth", "naive", "permuted")])
    runs.to_csv(tmp_path / "runs.csv", index=False)
    assert cli.main(["scorecard", "--runs", str(tmp_path / "runs.csv"), "--out-csv", str(tmp_path / "s.csv"),
                     "--out-md", str(tmp_path / "s.md"), "--out-json", str(tmp_path / "s.json")]) == 0

    def refuse(constant):
        raise AssertionError(f"bare {constant} in the scorecard JSON")

    card = json.loads((tmp_path / "s.json").read_text(encoding="utf-8"), parse_constant=refuse)
    assert card["flagged"] == 1 and card["rule"] == tidy.FLAG_RULE


def _legend_text(fig) -> tuple[list[str], str]:
    legend = fig.legends[0]
    return [t.get_text() for t in legend.get_texts()], legend.get_title().get_text()


def test_accuracy_figure_rings_a_flagged_point_and_names_it(tmp_path):
    fig = plots.accuracy_vs_rewind(tidy.collect(_runs_files(tmp_path)))
    labels, title = _legend_text(fig)
    assert plots.FLAGGED_LABEL in labels
    assert "† MNIST-1D · MLP ×1 · S = 90% · k = 4 · Naive: 1 of 3 runs dead (chance accuracy)" in title
    ring = next(ln for ax in fig.axes for ln in ax.get_lines() if ln.get_label() == plots.FLAGGED_LABEL)
    assert list(ring.get_xdata()) == [4.0] and ring.get_ydata()[0] == pytest.approx(44.0 + 1 / 3)


def test_lmc_figure_shows_diverged_curves_and_barriers():
    fig = plots.lmc_width(_lmc_curves())
    labels, title = _legend_text(fig)
    assert plots.DIVERGED_LABEL in labels
    assert "non-finite at α = 0, 0.5, 1 (2 of 2 seeds)" in title
    repair = [ax for ax in fig.axes if ax.get_title().endswith("REPAIR")]
    assert repair and all(any(ln.get_label() == plots.DIVERGED_LABEL for ln in ax.get_lines()) for ax in repair)
    barrier_ax = next(ax for ax in fig.axes if ax.get_title().endswith("barrier vs width"))
    crosses = [ln for ln in barrier_ax.get_lines() if ln.get_label() == plots.DIVERGED_LABEL]
    assert crosses and all(list(ln.get_xdata()) == [1.0] for ln in crosses)
    # the panels keep a y scale from their finite values (no 0..1 default from an empty panel)
    assert repair[0].get_ylim()[1] < 0.6


def test_a_panel_with_nothing_finite_says_so():
    curves = _lmc_curves()
    curves.loc[curves["mode"] == "repair", "loss"] = np.nan
    fig = plots.lmc_width(curves)
    repair = [ax for ax in fig.axes if ax.get_title().endswith("REPAIR")]
    assert all(any(t.get_text() == "diverged: no finite value" for t in ax.texts) for ax in repair)


def test_summary_leaves_a_non_finite_run_out_of_the_means_and_says_so():
    rows = [dict(experiment="e", dataset="mnist1d", model="mlp", width=1, seed=s, sparsity=0.9, k=4, branch=b,
                 test_acc=(np.inf if (b == "naive" and s == 2) else {"lth": 0.8, "naive": 0.6, "permuted": 0.7}[b]),
                 health="exploded" if (b == "naive" and s == 2) else "ok")
            for s in range(3) for b in ("lth", "naive", "permuted")]
    text = summary_markdown(pd.DataFrame(rows))
    assert "| ×1 | 90% | 4 | 80.00 | 60.00 †1 | 70.00 | +10.00 ± 0.00 | 50% |" in text
    assert ("†1 ×1, S = 90%, k = 4, Naive: 1 of 3 runs diverged (exploded loss); 1 of 3 values diverged "
            "(non-finite), left out of the mean.") in text
    assert " inf " not in text and "| inf" not in text
