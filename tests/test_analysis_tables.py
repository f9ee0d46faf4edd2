"""Paper tables and barriers from tiny tidy tables with hand-checked numbers."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from sparsebasin import cli
from sparsebasin.analysis import barriers, outputs, tables
from sparsebasin.errors import UserError


def _runs() -> pd.DataFrame:
    rows = [
        # dense: 90, 92 -> mean 91, std sqrt(2)
        dict(width=1, seed=0, branch="dense", sparsity=np.nan, k=np.nan, test_acc=0.90),
        dict(width=1, seed=1, branch="dense", sparsity=np.nan, k=np.nan, test_acc=0.92),
        dict(width=1, seed=0, branch="imp", sparsity=0.9, k=np.nan, test_acc=0.88),
    ]
    for seed, (lth, naive, perm) in enumerate([(0.85, 0.80, 0.83), (0.87, 0.80, 0.84)]):
        rows += [
            dict(width=1, seed=seed, branch="lth", sparsity=0.9, k=10, test_acc=lth),
            dict(width=1, seed=seed, branch="naive", sparsity=0.9, k=10, test_acc=naive),
            dict(width=1, seed=seed, branch="permuted", sparsity=0.9, k=10, test_acc=perm),
        ]
    df = pd.DataFrame(rows)
    df["dataset"], df["model"] = "cifar10", "resnet20"
    return df


def test_accuracy_table_mean_std_n_in_percent():
    frame, md = tables.accuracy_table(_runs())
    cell = frame[(frame["branch"] == "lth")].iloc[0]
    assert cell["mean_pct"] == pytest.approx(86.0)
    assert cell["std_pct"] == pytest.approx(math.sqrt(2))  # (85, 87), ddof=1
    assert cell["n"] == 2 and cell["k"] == 10 and cell["metric"] == "test_acc"
    dense = frame[frame["branch"] == "dense"].iloc[0]
    assert dense["mean_pct"] == pytest.approx(91.0) and math.isnan(dense["k"])
    imp = frame[frame["branch"] == "imp"].iloc[0]
    assert imp["n"] == 1 and math.isnan(imp["std_pct"])
    assert list(frame["branch"]) == ["dense", "imp", "lth", "naive", "permuted"]
    assert "- Dense: 91.00 ± 1.41" in md
    assert "88.00 (n=1)" in md
    assert "| 90% | 10 | 86.00 ± 1.41 | 80.00 ± 0.00 | 83.50 ± 0.71 |" in md
    assert "CIFAR-10 · ResNet20 ×1" in md


def test_accuracy_table_rejects_non_accuracy_metric():
    with pytest.raises(UserError, match="test_loss"):
        tables.accuracy_table(_runs(), metric="test_loss")


def test_missing_column_names_the_table():
    df = _runs().drop(columns="branch")
    df.attrs["source"] = "runs.csv"
    with pytest.raises(UserError, match="runs.csv.*branch"):
        tables.accuracy_table(df)


def test_diversity_table_orders_groups_and_formats():
    ens = pd.DataFrame([
        dict(group=g, n=5, member_acc_mean=a, member_acc_std=0.002, ensemble_acc=a + 0.01, disagreement=d, kl=0.1, js=0.02,
             dataset="cifar10", model="resnet20", width=1, sparsity=0.9)
        for g, a, d in [("permuted", 0.85, 0.12), ("lth", 0.87, 0.05), ("dense", 0.92, 0.06), ("naive", 0.80, 0.15), ("imp", 0.88, 0.08)]
    ])
    frame, md = tables.diversity_table(ens)
    assert list(frame["group"]) == ["dense", "imp", "lth", "naive", "permuted"]
    row = frame[frame["group"] == "permuted"].iloc[0]
    assert row["acc_mean_pct"] == pytest.approx(85.0) and row["ensemble_acc_pct"] == pytest.approx(86.0)
    assert "| Permuted | 5 | 85.00 ± 0.20 | 86.00 | 0.1200 | 0.1000 | – | 0.0200 |" in md  # no one-way KL collected
    assert "S = 90%" in md and "ordered pairs" in md


def test_diversity_table_rejects_duplicate_groups():
    row = dict(group="lth", n=5, member_acc_mean=0.9, member_acc_std=0.0, ensemble_acc=0.9, disagreement=0, kl=0, js=0, width=1)
    with pytest.raises(UserError, match="several ensembles for group 'lth'"):
        tables.diversity_table(pd.DataFrame([row, row]))


def test_early_matching_table():
    rows = []
    for i, accs in [(5, (0.80, 0.82)), (200, (0.84, 0.86))]:
        rows += [dict(branch="permuted", k=20, sparsity=0.9, seed=s, match_epoch=i, test_acc=a) for s, a in enumerate(accs)]
    rows += [dict(branch="lth", k=20, sparsity=0.9, seed=0, test_acc=0.88), dict(branch="naive", k=20, sparsity=0.9, seed=0, test_acc=0.78)]
    rows += [dict(branch="permuted", k=10, sparsity=0.9, seed=0, match_epoch=5, test_acc=0.1)]  # other k: ignored
    frame, md = tables.early_matching_table(pd.DataFrame(rows), k=20)
    perm = frame[frame["branch"] == "permuted"].set_index("match_epoch")
    assert perm.loc[5, "mean_pct"] == pytest.approx(81.0) and perm.loc[200, "mean_pct"] == pytest.approx(85.0)
    assert (frame["k"] == 20).all()
    assert "| 5 | 81.00 ± 1.41 |" in md and "| LTH (reference) | 88.00 (n=1) |" in md


def test_early_matching_needs_match_epoch():
    with pytest.raises(UserError, match="match_epoch"):
        tables.early_matching_table(pd.DataFrame([dict(branch="permuted", k=20, test_acc=0.5)]))


def _curves() -> pd.DataFrame:
    rows = []
    for width, height in [(1, 0.5), (4, 0.2)]:
        for seed, bump in [(0, 0.0), (1, 0.1)]:
            for permuted in (False, True):
                for a, base in [(0.0, 1.0), (0.5, None), (1.0, 2.0)]:
                    h = height + bump if permuted else 1.0
                    # chord at 0.5 is 1.5; loss there is 1.5 + h
                    loss = base if base is not None else 1.5 + h
                    rows.append(dict(alpha=a, mode="plain", permuted=permuted, split="test", loss=loss,
                                     acc=0.9, error=0.1 if base is not None else 0.1 + h / 10, width=width, seed=seed))
    return pd.DataFrame(rows)


def test_barrier_is_height_above_chord():
    assert barriers.barrier(np.array([0, 0.5, 1]), np.array([1.0, 2.0, 2.0])) == pytest.approx(0.5)
    assert barriers.barrier(np.array([0, 0.5, 1]), np.array([1.0, 1.0, 1.0])) == pytest.approx(0.0)
    bars = barriers.barriers_from_curves(_curves())
    assert len(bars) == 8
    one = bars[(bars["width"] == 4) & bars["permuted"] & (bars["seed"] == 1)].iloc[0]
    assert one["loss_barrier"] == pytest.approx(0.3) and one["error_barrier"] == pytest.approx(0.03)


def test_barriers_need_distinct_curves():
    df = _curves().drop(columns="seed")
    with pytest.raises(UserError, match="repeated alpha"):
        barriers.barriers_from_curves(df)


def test_lmc_table_from_curves_and_from_barriers_agree():
    from_curves, md = tables.lmc_table(_curves())
    bars = barriers.barriers_from_curves(_curves())
    from_bars, _ = tables.lmc_table(bars)
    pd.testing.assert_frame_equal(from_curves, from_bars)
    row = from_curves[(from_curves["width"] == 4) & from_curves["permuted"]].iloc[0]
    assert row["loss_barrier_mean"] == pytest.approx(0.25) and row["n"] == 2
    assert row["loss_barrier_std"] == pytest.approx(math.sqrt(0.005))
    assert row["error_barrier_mean_pct"] == pytest.approx(2.5)
    assert "| ×4 | 1.000 ± 0.000 | 0.250 ± 0.071 |" in md
    assert "Unpermuted · plain" in md and "Permuted · plain" in md


def test_table_cli_writes_csv_md_and_provenance(tmp_path):
    src = tmp_path / "runs.csv"
    _runs().to_csv(src, index=False)
    out_csv, out_md = tmp_path / "t.csv", tmp_path / "t.md"
    assert cli.main(["table", "--kind", "accuracy", "--table", str(src), "--out-csv", str(out_csv), "--out-md", str(out_md)]) == 0
    frame = pd.read_csv(out_csv)
    assert list(frame.columns) == ["dataset", "model", "width", "sparsity", "k", "branch", "metric", "mean_pct", "std_pct", "n",
                                   "sparsity_all_weights", "n_flagged", "n_nonfinite", "flags"]
    text = out_md.read_text()
    assert text.startswith("<!-- provenance: {") and "86.00 ± 1.41" in text
    assert json.loads(outputs.sidecar_path(out_csv).read_text())["config"]["kind"] == "accuracy"


def test_runs_from_several_matching_epochs_are_series_not_averaged():
    """B's matching epoch is a series key (issue 26): each epoch its own row and column, never one mean."""
    runs = _runs()
    runs["match_epoch"] = np.nan
    runs.loc[runs["branch"] == "permuted", "match_epoch"] = [5, 200]
    frame, md = tables.accuracy_table(runs)
    perm = frame[frame["branch"] == "permuted"].set_index("match_epoch")
    assert perm.loc[5.0, "mean_pct"] == pytest.approx(83.0) and perm.loc[200.0, "mean_pct"] == pytest.approx(84.0)
    assert (perm["n"] == 1).all() and frame.loc[frame["branch"] == "lth", "match_epoch"].isna().all()
    assert "| Permuted · B at epoch 5 | Permuted · B at epoch 200 |" in md


def test_accuracy_table_writes_every_metric_and_the_sparsity_over_all_weights(tmp_path):
    """Table 10 has top-1 and top-5; captions give the sparsity over all weights too (faithfulness M1, M2)."""
    runs = _runs().assign(test_top5=lambda d: (d["test_acc"] + 0.05).clip(upper=1.0))
    runs["sparsity_all_weights"] = [0.829 if s == 0.9 else (0.737 if s == 0.8 else float("nan")) for s in runs["sparsity"]]
    src = tmp_path / "runs.csv"
    runs.to_csv(src, index=False)
    out_csv, out_md = tmp_path / "t.csv", tmp_path / "t.md"
    assert cli.main(["table", "--kind", "accuracy", "--table", str(src), "--metrics", "test_acc,test_top5",
                     "--out-csv", str(out_csv), "--out-md", str(out_md)]) == 0
    frame = pd.read_csv(out_csv)
    assert set(frame["metric"]) == {"test_acc", "test_top5"}
    assert len(frame[frame["metric"] == "test_top5"]) == len(frame[frame["metric"] == "test_acc"])
    text = out_md.read_text()
    assert "Top-5 test accuracy (%)" in text and "Test accuracy (%)" in text
    assert "90% (82.9%)" in text and "over all conv and linear weights" in text
    assert np.allclose(frame.loc[frame["sparsity"] == 0.9, "sparsity_all_weights"], 0.829)


def test_weights_sparsity_of_resnet20x1_at_90_percent():
    """90% of ResNet20x1's prunable weights is 82.9% of its conv and linear weights (the shortcuts stay dense)."""
    import torch

    from sparsebasin.models import build_model, prunable_keys
    from sparsebasin.pruning import prune_to, sparsity_report

    model = build_model({"name": "resnet20", "width": 1}, 10, 3)
    sd = model.state_dict()
    keys = prunable_keys(model)
    mask = prune_to(sd, {k: torch.ones_like(sd[k], dtype=torch.bool) for k in keys}, 0.9)
    rep = sparsity_report(model, mask, 0.9)
    assert rep["weights"]["realised"] == pytest.approx(0.829, abs=5e-4)
    assert rep["all"]["realised"] < rep["weights"]["realised"] < rep["prunable"]["realised"]
