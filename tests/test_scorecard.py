"""The reproduction scorecard: our cells against the paper's published numbers (sparsebasin.analysis.scorecard)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from sparsebasin import reference
from sparsebasin.analysis import plots, style
from sparsebasin.analysis.scorecard import scorecard, to_markdown
from sparsebasin.cli import main

KEYS = ["dataset", "model", "width", "sparsity", "k", "branch"]


def runs_from(ref: pd.DataFrame, extra=("match_epoch",)) -> pd.DataFrame:
    """Three seeds per published cell at mean − std, mean, mean + std (one seed at the mean for single runs)."""
    rows: dict = {}
    for _, r in ref.iterrows():
        spread = (-1, 0, 1) if np.isfinite(r["std"]) else (0,)
        for seed, sign in enumerate(spread):
            key = tuple(r[k] for k in KEYS) + tuple(r.get(e, np.nan) for e in extra if e in ref.columns) + (seed,)
            value = (r["mean"] + sign * (r["std"] if np.isfinite(r["std"]) else 0)) / 100
            rows.setdefault(key, {})[r["metric"]] = value
    cols = KEYS + [e for e in extra if e in ref.columns] + ["seed"]
    return pd.DataFrame([dict(zip(cols, k), **v) for k, v in rows.items()])


@pytest.fixture(scope="module")
def paper_runs():
    return runs_from(reference.load("accuracy"))


def diversity_from(ref: pd.DataFrame) -> pd.DataFrame:
    """Ensembles as collect writes them (``group`` and the ``branch`` tag, equal); the dense group, which has no
    published ensemble numbers, gets made-up finite ones (the ensemble step always measures them)."""
    out = ref.rename(columns={"member_acc_mean": "m", "member_acc_std": "s"}).copy()
    for col, fill in (("ensemble_acc", 93.0), ("disagreement", 0.05), ("kl", 0.1), ("js", 0.03)):
        out[col] = out[col].fillna(fill)
    table = pd.DataFrame({"dataset": out["dataset"], "model": out["model"], "width": out["width"],
                          "sparsity": out["sparsity"], "k": 25, "branch": out["group"], "group": out["group"],
                          "n": out["n"],
                          "member_acc_mean": out["m"] / 100, "member_acc_std": out["s"] / 100,
                          "ensemble_acc": out["ensemble_acc"] / 100, "disagreement": out["disagreement"],
                          "kl": out["kl"], "js": out["js"]})
    return table


def test_the_paper_itself_reproduces_within(paper_runs):
    early = runs_from(reference.load("early_matching"))
    diversity = diversity_from(reference.load("diversity"))
    card = scorecard(paper_runs, diversity=diversity, early=early, metrics=("test_acc", "test_top5"))
    counts = card.cells["verdict"].value_counts().to_dict()
    n_acc, n_early = len(reference.load("accuracy")), len(reference.load("early_matching"))
    div = reference.load("diversity")
    n_div = int(div[["member_acc_mean", "ensemble_acc", "disagreement", "kl", "js"]].notna().sum().sum())
    assert counts.get("within") == n_acc + n_early + n_div, counts
    assert set(counts) <= {"within", "no_reference"}  # the dense group's ensemble metrics are not published
    assert card.headline().startswith(f"{n_acc + n_early + n_div} of {n_acc + n_early + n_div} published cells "
                                      "reproduced within 2σ (0 above, 0 below, 0 not run); permuted > naive significant in ")


@pytest.mark.parametrize("shift,expect", [(-5.0, "below"), (5.0, "above")])
def test_one_cell_moved_by_five_points_is_flagged_alone(paper_runs, shift, expect):
    runs = paper_runs.copy()
    cell = (runs["dataset"] == "cifar10") & (runs["width"] == 4) & np.isclose(runs["sparsity"], 0.9) & \
        (runs["k"] == 20) & (runs["branch"] == "permuted")
    assert cell.sum() == 3
    runs.loc[cell, "test_acc"] += shift / 100
    card = scorecard(runs, metrics=("test_acc", "test_top5"))
    flagged = card.cells[card.cells["verdict"] != "within"]
    assert len(flagged) == 1 and flagged.iloc[0]["verdict"] == expect
    r = flagged.iloc[0]
    assert (r["dataset"], r["width"], r["sparsity"], r["k"], r["branch"]) == ("cifar10", 4, 0.9, 20, "permuted")
    assert r["diff"] == pytest.approx(shift) and int(r["table"]) == 6
    assert f"({int(shift > 0)} above, {int(shift < 0)} below, 0 not run)" in card.headline()


def test_a_cell_without_reference_is_kept_and_missing_cells_are_not_run(paper_runs):
    runs = paper_runs.copy()
    extra = runs[(runs["dataset"] == "cifar10") & (runs["width"] == 1) & (runs["k"] == 0)].copy()
    extra["k"] = 3  # the paper has no k = 3
    dropped = (runs["dataset"] == "cifar100") & (runs["width"] == 16) & np.isclose(runs["sparsity"], 0.97)
    runs = pd.concat([runs[~dropped], extra], ignore_index=True)
    card = scorecard(runs, metrics=("test_acc", "test_top5"))
    no_ref = card.cells[card.cells["verdict"] == "no_reference"]
    assert len(no_ref) == extra.groupby(["model", "sparsity", "branch"]).ngroups and set(no_ref["k"]) == {3}
    not_run = card.cells[card.cells["verdict"] == "not_run"]
    ref = reference.load("accuracy")
    want = ref[(ref["dataset"] == "cifar100") & (ref["width"] == 16) & np.isclose(ref["sparsity"], 0.97)]
    assert len(not_run) == len(want) > 0 and set(not_run["table"]) == {14}
    assert f"0 below, {len(want)} not run)" in card.headline()
    md = to_markdown(card)
    assert "## Published cells not run" in md and md.count("| 14 | CIFAR-100 ResNet20 | ×16 | 97% |") == len(want)


def test_single_run_reference_cells_use_the_floor():
    """Table 10 (ImageNet, single runs): the stds are floored at 0.1 pp, so with one run of ours the
    2σ band is 2·sqrt(0.1² + 0.1²) = 0.283 pp."""
    ref = reference.load("accuracy")
    cell = ref[(ref["table"] == 10) & (ref["metric"] == "test_acc")].iloc[0]
    assert math.isnan(cell["std"]) and cell["n"] == 1
    for offset, verdict in ((0.25, "within"), (-0.25, "within"), (0.3, "above"), (-0.3, "below")):
        runs = pd.DataFrame([{**{k: cell[k] for k in KEYS}, "seed": 0, "test_acc": (cell["mean"] + offset) / 100}])
        card = scorecard(runs)
        row = card.cells[card.cells["verdict"] != "not_run"].iloc[0]
        assert row["threshold"] == pytest.approx(2 * math.sqrt(0.02)) and row["verdict"] == verdict, offset


def test_claims_are_counted_per_cell():
    rows = []
    for s, (lth, naive, permuted) in ((0.8, (0.9, 0.8, 0.85)), (0.9, (0.9, 0.7, 0.8)), (0.95, (0.8, 0.75, 0.7))):
        for b, v in (("lth", lth), ("naive", naive), ("permuted", permuted)):
            rows.append({"dataset": "mnist1d", "model": "mlp", "width": 1, "sparsity": s, "k": 2, "branch": b,
                         "seed": 0, "test_acc": v})
    barriers = pd.DataFrame([{"dataset": "mnist1d", "model": "mlp", "width": w, "seed": 0, "mode": "plain",
                              "split": "test", "permuted": p, "loss_barrier": b}
                             for w, p, b in ((1, True, 0.5), (4, True, 0.2), (1, False, 1.0), (4, False, 1.5))])
    card = scorecard(pd.DataFrame(rows), barriers=barriers)
    got = {c.name: (c.held, c.cells, c.too_few, c.significant) for c in card.claims}
    # one seed per cell: the means still say which way each cell goes, but no cell can be tested
    assert got == {"permuted > naive": (2, 3, 3, 0), "LTH >= permuted": (3, 3, 3, 0),
                   "permuted − naive grows with sparsity": (0, 1, 1, 0),  # +5 pp at 0.8, -5 pp at 0.95
                   "matched barrier shrinks with width": (1, 1, 1, 0)}
    assert card.headline() == ("No published reference for this experiment (MNIST-1D MLP); "
                               "permuted > naive significant in 0 of 3 cells (one-sided paired t-test over seeds, "
                               "α = 0.05; 3 cells with fewer than 2 seeds, not tested).")


def test_step_writes_csv_markdown_and_json(tmp_path, paper_runs, capsys):
    runs = paper_runs[paper_runs["model"] == "vgg11"].assign(experiment="cifar10_vgg11")
    runs.to_csv(tmp_path / "runs.csv", index=False)
    out = tmp_path / "tables"
    rc = main(["scorecard", "--runs", str(tmp_path / "runs.csv"), "--out-csv", str(out / "scorecard.csv"),
               "--out-md", str(out / "scorecard.md"), "--out-json", str(out / "scorecard.json")])
    assert rc in (0, None)
    n = len(reference.load("accuracy").query("model == 'vgg11'"))
    card = json.loads((out / "scorecard.json").read_text())
    assert card["counts"]["within"] == n and card["published"] == n
    assert card["headline"] in capsys.readouterr().out
    table = pd.read_csv(out / "scorecard.csv")
    assert list(table.columns[:3]) == ["section", "table", "dataset"] and len(table) == n
    assert (out / "scorecard.csv.provenance.json").is_file()
    assert (out / "scorecard.md").read_text().splitlines()[2] == "# Reproduction scorecard"


def test_summary_opens_with_the_headline(tmp_path, paper_runs):
    runs = paper_runs[paper_runs["model"] == "vgg11"].assign(experiment="e")
    runs.to_csv(tmp_path / "runs.csv", index=False)
    main(["scorecard", "--runs", str(tmp_path / "runs.csv"), "--out-csv", str(tmp_path / "s.csv"),
          "--out-md", str(tmp_path / "s.md"), "--out-json", str(tmp_path / "s.json")])
    main(["summary", "--runs", str(tmp_path / "runs.csv"), "--scorecard", str(tmp_path / "s.json"),
          "--out", str(tmp_path / "summary.md")])
    lines = [x for x in (tmp_path / "summary.md").read_text().splitlines() if x and not x.startswith("<!--")]
    n = len(reference.load("accuracy").query("model == 'vgg11'"))
    card = json.loads((tmp_path / "s.json").read_text())
    claim = next(c for c in card["claims"] if c["name"] == "permuted > naive")
    assert claim["cells"] == len(runs.groupby(["sparsity", "k"])) and claim["too_few"] == 0
    assert lines[0] == (f"**Reproduction:** {n} of {n} published cells reproduced within 2σ (0 above, 0 below, "
                        f"0 not run); permuted > naive significant in {claim['significant']} of {claim['cells']} "
                        "cells (one-sided paired t-test over seeds, α = 0.05).")
    assert lines[1].startswith("# Summary")


def _paper_artists(fig):
    return [ln for ax in fig.axes for ln in ax.get_lines() if ln.get_label() == style.PAPER_LABEL]


@pytest.mark.parametrize("kind", ["accuracy_vs_rewind", "accuracy_vs_sparsity"])
def test_figures_draw_the_paper_grey_under_ours(paper_runs, kind):
    runs = paper_runs[(paper_runs["model"] == "resnet20") & (paper_runs["dataset"] == "cifar10") & (paper_runs["width"] == 1)]
    runs = runs.assign(test_acc=runs["test_acc"] - 0.01)  # ours one point below the paper
    kw = {"ks": [20]} if kind == "accuracy_vs_sparsity" else {}
    plain = plots.KINDS[kind](runs, **kw)
    assert not _paper_artists(plain)
    fig = plots.KINDS[kind](runs, reference=reference.load("accuracy"), **kw)
    lines = _paper_artists(fig)
    panels = 4 if kind == "accuracy_vs_rewind" else 1
    assert len(lines) == 3 * panels  # one per branch and panel
    for ln in lines:
        assert ln.get_color() == style.PAPER_STYLE["color"] and ln.get_linestyle() == "--"
        assert ln.get_markerfacecolor() == "none"
        ours = [o for o in ln.axes.get_lines() if o.get_label() in ("LTH", "Naive", "Permuted")]
        assert ours and all(ln.get_zorder() < o.get_zorder() for o in ours)
    ref = reference.load("accuracy")
    want = ref[(ref["table"] == 5) & np.isclose(ref["sparsity"], 0.9) & (ref["branch"] == "lth")].sort_values("k")
    if kind == "accuracy_vs_rewind":
        ax = next(a for a in fig.axes if "90%" in a.get_title())
        lth = next(ln for ln in _paper_artists(fig) if ln.axes is ax and ln.get_marker() == "o")
        assert list(lth.get_ydata()) == pytest.approx(list(want["mean"]))
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels.count("paper") == 1
