"""Figures from small synthetic tidy tables: valid files, labels, fixed styles."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_hex

from sparsebasin import cli
from sparsebasin.analysis import plots, style
from sparsebasin.errors import UserError


def _runs() -> pd.DataFrame:
    rows = []
    for seed in (0, 1):
        rows.append(dict(width=1, seed=seed, branch="dense", sparsity=np.nan, k=np.nan, test_acc=0.92, test_top5=0.99))
        for s in (0.8, 0.9):
            rows.append(dict(width=1, seed=seed, branch="imp", sparsity=s, k=np.nan, test_acc=0.9 - s / 10, test_top5=0.99))
            for k in (0, 10, 20):
                for b, off in (("lth", 0.0), ("naive", -0.05), ("permuted", -0.02)):
                    rows.append(dict(width=1, seed=seed, branch=b, sparsity=s, k=k,
                                     test_acc=0.85 + off + k / 1000 + seed / 100, test_top5=0.95 + off / 10))
    df = pd.DataFrame(rows)
    df["dataset"], df["model"] = "cifar10", "resnet20"
    return df


def _curves(with_rounds: bool = False) -> pd.DataFrame:
    rows = []
    groups = [dict(round=r, round_sparsity=1 - 0.8 ** r, width=4) for r in (1, 2, 3)] if with_rounds else [dict(width=w) for w in (1, 4)]
    for g in groups:
        for seed in (0, 1):
            for permuted in ((False,) if with_rounds else (False, True)):
                for mode in ("plain", "bn_reset"):
                    for a in np.linspace(0, 1, 5):
                        bump = 4 * a * (1 - a) * (0.5 if mode == "bn_reset" else 1.0) * (0.3 if permuted else 1.0) * g.get("round", 1)
                        rows.append(dict(alpha=a, mode=mode, permuted=permuted, split="test", loss=0.3 + bump,
                                         acc=0.9 - bump / 5, error=0.1 + bump / 5, seed=seed, dataset="cifar10",
                                         model="resnet20", **g))
    return pd.DataFrame(rows)


def _plane() -> pd.DataFrame:
    us = np.linspace(-0.5, 1.5, 5)
    rows = [dict(u=u, v=v, loss=u * u + v * v, error=min(0.9, 0.1 + 0.1 * (u * u + v * v)), point=None) for u in us for v in us]
    rows += [dict(u=0.0, v=0.0, point="origin"), dict(u=1.0, v=0.0, point="p1"), dict(u=0.0, v=1.0, point="p2", label="Perm.")]
    return pd.DataFrame(rows)


def _visible(fig):
    return [ax for ax in fig.axes if ax.get_visible() and ax.get_label() != "<colorbar>"]


def _lines_by_label(ax):
    return {line.get_label(): line for line in ax.get_lines() if not line.get_label().startswith("_")}


def test_accuracy_vs_rewind_branches_have_fixed_styles():
    fig = plots.accuracy_vs_rewind(_runs())
    axes = _visible(fig)
    assert len(axes) == 2  # one panel per sparsity
    for ax in axes:
        lines = _lines_by_label(ax)
        assert set(lines) == {"LTH", "Naive", "Permuted", "Dense", "IMP"}
        for label, branch in (("LTH", "lth"), ("Naive", "naive"), ("Permuted", "permuted")):
            assert to_hex(lines[label].get_color()) == style.BRANCH_STYLE[branch]["color"].lower()
            assert lines[label].get_marker() == style.BRANCH_STYLE[branch]["marker"]
            assert list(lines[label].get_xdata()) == [0, 10, 20]
        assert lines["Dense"].get_linestyle() == "--"
        assert lines["Dense"].get_ydata()[0] == pytest.approx(92.0)
        assert ax.get_ylabel() == "" or ax.get_ylabel() == "Test accuracy (%)"
    assert axes[0].get_ylabel() == "Test accuracy (%)"
    assert all(ax.get_xlabel() == "Rewind point k (epochs)" for ax in axes)
    assert "S = 80%" in axes[0].get_title() and "S = 90%" in axes[1].get_title()
    # LTH at k=10: seeds give 0.86 and 0.87 -> mean 86.5 %; a ±std band is drawn.
    assert _lines_by_label(axes[0])["LTH"].get_ydata()[1] == pytest.approx(86.5)
    assert len(axes[0].collections) == 3
    assert len(fig.legends) == 1


def test_accuracy_vs_rewind_top5_label():
    fig = plots.accuracy_vs_rewind(_runs(), metric="test_top5")
    assert _visible(fig)[0].get_ylabel() == "Top-5 test accuracy (%)"


def test_accuracy_vs_sparsity_one_panel_per_k():
    fig = plots.accuracy_vs_sparsity(_runs(), ks=[10, 20, 99])  # 99 absent: skipped
    axes = _visible(fig)
    assert len(axes) == 2
    lines = _lines_by_label(axes[0])
    assert list(lines["Permuted"].get_xdata()) == pytest.approx([80.0, 90.0])
    assert to_hex(lines["IMP"].get_color()) == style.BRANCH_STYLE["imp"]["color"].lower()
    assert axes[0].get_xlabel() == "Sparsity (%)"
    with pytest.raises(UserError, match="--ks"):
        plots.accuracy_vs_sparsity(_runs(), ks=[99])


def test_lmc_width_one_curve_per_width_and_barrier_panel():
    fig = plots.lmc_width(_curves())
    axes = _visible(fig)
    assert len(axes) == 5  # naive/permuted x plain/bn_reset + barrier vs width
    curve_ax = axes[0]
    lines = _lines_by_label(curve_ax)
    assert set(lines) == {"width ×1", "width ×4"}
    assert lines["width ×4"].get_color() == style.width_colour(4)
    assert curve_ax.get_xlabel() == "Interpolation weight α" and curve_ax.get_ylabel() == "Test loss"
    bar_ax = axes[-1]
    assert bar_ax.get_xlabel() == "Width multiplier" and bar_ax.get_ylabel() == "Loss barrier"
    bar_lines = {c.get_label(): c.lines[0] for c in bar_ax.containers}  # errorbar containers carry the labels
    assert to_hex(bar_lines["Permuted · plain"].get_color()) == style.BRANCH_STYLE["permuted"]["color"].lower()
    # plain, not permuted: bump 1 at alpha .5 above a flat chord at 0.3
    assert bar_lines["Unpermuted · plain"].get_ydata()[0] == pytest.approx(1.0)


def test_imp_barrier_per_mode():
    fig = plots.imp_barrier(_curves(with_rounds=True))
    ax = _visible(fig)[0]
    lines = _lines_by_label(ax)
    assert set(lines) == {"without BN reset", "with BN reset"}
    # error bump at alpha .5 is round / 5 -> 20, 40, 60 % (x0.5 with BN reset)
    assert list(lines["without BN reset"].get_ydata()) == pytest.approx([20.0, 40.0, 60.0])
    assert list(lines["with BN reset"].get_ydata()) == pytest.approx([10.0, 20.0, 30.0])
    assert ax.get_ylabel() == "Error barrier (%)" and ax.get_xlabel() == "IMP iteration"


def test_imp_barrier_x_is_the_iteration_along_the_path_not_the_round_file():
    """With one chain for all targets the rounds to 0.90 are files 1-7, 9-12 (8 is the 0.80 branch):
    the x axis is the iteration 1..11, without a gap (faithfulness audit B3)."""
    from sparsebasin.pruning.schedule import imp_schedule, lineage

    sched = imp_schedule([0.8, 0.9, 0.95, 0.97], 0.2)
    path = lineage(sched, next(r.round for r in sched if r.kind == "branch" and r.target == 0.9))
    assert path == [1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12]
    rows = []
    for r in path:
        for a in (0.0, 0.5, 1.0):
            rows.append(dict(round=r, round_sparsity=0.5, width=4, mode="plain", permuted=False, split="test",
                             alpha=a, loss=1.0, acc=0.9 - 0.1 * (a == 0.5), error=0.1 + 0.1 * (a == 0.5)))
    for tagged in (False, True):
        df = pd.DataFrame(rows)
        if tagged:
            df["imp_iteration"] = [path.index(r) + 1 for r in df["round"]]
        ax = _visible(plots.imp_barrier(df))[0]
        line = _lines_by_label(ax)["plain"]  # alone, not "without BN reset"
        assert list(line.get_xdata()) == list(range(1, 12))
        assert [t.get_text() for t in ax.get_xticklabels()] == [str(i) for i in range(1, 12)]


def test_plane_marks_three_anchors():
    fig = plots.plane(_plane(), split=None)
    ax = _visible(fig)[0]
    lines = _lines_by_label(ax)
    assert set(lines) == {"Dense A", "LTH", "Perm."}
    assert (lines["LTH"].get_xdata()[0], lines["LTH"].get_ydata()[0]) == (1.0, 0.0)
    with pytest.raises(UserError, match="incomplete"):
        plots.plane(_plane().drop(index=3), split=None)


def test_wrong_metric_is_user_error():
    with pytest.raises(UserError, match="--metric"):
        plots.lmc_width(_curves(), metric="test_acc")


@pytest.mark.parametrize("kind, table, extra", [
    ("accuracy_vs_rewind", _runs, []),
    ("plane", _plane, ["--split", ""]),
])
def test_figure_cli_writes_valid_pdf_and_png_with_provenance(tmp_path, kind, table, extra):
    src = tmp_path / "t.csv"
    table().to_csv(src, index=False)
    pdf, png = tmp_path / "f.pdf", tmp_path / "f.png"
    assert cli.main(["figure", "--kind", kind, "--table", str(src), "--out", str(pdf), "--png", str(png), *extra]) == 0
    pdf_bytes, png_bytes = pdf.read_bytes(), png.read_bytes()
    assert pdf_bytes.startswith(b"%PDF-") and pdf_bytes.rstrip().endswith(b"%%EOF")
    assert png_bytes.startswith(b"\x89PNG\r\n\x1a\n") and b"IEND" in png_bytes[-16:]
    assert b"Provenance" in png_bytes and b"/Subject" in pdf_bytes


def test_figure_cli_table2_only_for_accuracy(tmp_path, capsys):
    src = tmp_path / "t.csv"
    _curves().to_csv(src, index=False)
    code = cli.main(["figure", "--kind", "lmc_width", "--table", str(src), "--table2", str(src), "--out", str(tmp_path / "f.pdf")])
    assert code == 2 and "--table2" in capsys.readouterr().err
