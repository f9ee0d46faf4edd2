"""Figure axes fit our data (issue 27.9): the paper's lines clipped to our range, degenerate ranges made
readable, the plane titled and shaped to its grid, no 'BN reset' words for a model without BatchNorm."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sparsebasin import reference
from sparsebasin.analysis import plots, style


def _runs(ks=(0, 1), sparsities=(0.8, 0.9), acc=None, widths=(1,)) -> pd.DataFrame:
    rows = []
    for w in widths:
        for seed in (0, 1):
            rows.append(dict(dataset="cifar10", model="resnet20", width=w, seed=seed, branch="dense", sparsity=np.nan,
                             k=np.nan, test_acc=0.6 if acc is None else acc))
            for s in sparsities:
                for k in ks:
                    for b, off in (("lth", 0.1), ("naive", 0.0), ("permuted", 0.05)):
                        rows.append(dict(dataset="cifar10", model="resnet20", width=w, seed=seed, branch=b, sparsity=s,
                                         k=k, test_acc=(0.4 + off + k / 50 + seed / 100) if acc is None else acc))
    return pd.DataFrame(rows)


def _panels(fig):
    return [ax for ax in fig.axes if ax.get_visible() and ax.get_label() != "<colorbar>"]


def _paper_lines(fig):
    return [ln for ax in fig.axes for ln in ax.get_lines() if ln.get_label().startswith(style.PAPER_LABEL)]


def test_rewind_axis_follows_our_k_and_clips_the_paper():
    fig = plots.accuracy_vs_rewind(_runs(), reference=reference.load("accuracy"))
    for ax in _panels(fig):
        lo, hi = ax.get_xlim()
        assert -0.1 < lo < 0 and 1 < hi < 1.1, (lo, hi)  # main: the paper's k = 100 set the range
        assert {t for t in ax.get_xticks() if lo <= t <= hi} == {0.0, 1.0}
    lines = _paper_lines(fig)
    assert lines and all(max(ln.get_xdata()) <= 1.0 for ln in lines)
    # clipped, not dropped: the paper's k = 0 point and its line up to our k = 1
    lth = reference.load("accuracy").query("table == 5 and branch == 'lth' and sparsity == 0.8 and metric == 'test_acc'")
    lth = lth.sort_values("k")
    first = next(ln for ln in lines if ln.get_marker() == "o" and "80%" in ln.axes.get_title())
    assert list(first.get_xdata()) == [0.0, 1.0]
    assert first.get_ydata()[1] == pytest.approx(np.interp(1.0, lth["k"], lth["mean"]))
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "paper (clipped to our k range)" in labels and "paper" not in labels


def test_sparsity_axis_follows_our_sparsities_and_clips_the_paper():
    fig = plots.accuracy_vs_sparsity(_runs(ks=(20,)), ks=[20], reference=reference.load("accuracy"))
    ax = _panels(fig)[0]
    lo, hi = ax.get_xlim()
    assert 79 < lo < 80 and 90 < hi < 91  # the paper goes on to 97%
    assert all(max(ln.get_xdata()) <= 90.0 for ln in _paper_lines(fig))


def test_paper_lines_inside_our_range_are_not_called_clipped():
    runs = _runs(ks=tuple(sorted(set(reference.load("accuracy").query("table == 5")["k"]))))
    fig = plots.accuracy_vs_rewind(runs, reference=reference.load("accuracy"))
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "paper" in labels


@pytest.mark.parametrize("k", [0, 4])
def test_one_rewind_point_gets_a_readable_axis(k):
    fig = plots.accuracy_vs_rewind(_runs(ks=(k,)))
    for ax in _panels(fig):
        lo, hi = ax.get_xlim()
        assert hi - lo >= 0.9 and lo < k < hi  # main: -0.04..0.04 around k = 0
        assert list(ax.get_xticks()) == [k]


def test_one_sparsity_gets_a_readable_axis():
    fig = plots.accuracy_vs_sparsity(_runs(ks=(1,), sparsities=(0.9,)), ks=[1])
    ax = _panels(fig)[0]
    lo, hi = ax.get_xlim()
    assert hi - lo >= 4 and list(ax.get_xticks()) == [90.0]


def test_a_flat_panel_is_not_zoomed_to_noise():
    fig = plots.accuracy_vs_sparsity(_runs(ks=(1,), acc=0.1), ks=[1])  # VGG11 at chance: every value 10 %
    lo, hi = _panels(fig)[0].get_ylim()
    assert hi - lo >= 2.0 and lo < 10 < hi


def _imp_rounds(bn: bool) -> pd.DataFrame:
    rows = []
    for r in (1, 2, 3):
        for mode in ("plain", "bn_reset"):
            for a in (0.0, 0.5, 1.0):
                bump = 0.0 if not bn else (0.1 if mode == "plain" else 0.05) * 4 * a * (1 - a)
                rows.append(dict(alpha=a, mode=mode, permuted=False, split="test", loss=0.3 + bump, acc=0.9,
                                 error=0.1 + bump, seed=0, dataset="mnist1d", model="mlp", width=1, round=r,
                                 round_sparsity=1 - 0.8 ** r))
    return pd.DataFrame(rows)


def test_imp_barrier_of_a_model_without_batchnorm_does_not_speak_of_bn_reset():
    fig = plots.imp_barrier(_imp_rounds(bn=False))
    ax = _panels(fig)[0]
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["plain (no BatchNorm to reset)"]
    assert not any("BN reset" in lbl for lbl in labels)
    lo, hi = ax.get_ylim()  # a flat zero barrier: from 0, not a ±0.05 band around it
    assert lo == 0 and hi >= 1.0


def test_imp_barrier_with_batchnorm_keeps_both_modes():
    fig = plots.imp_barrier(_imp_rounds(bn=True))
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["without BN reset", "with BN reset"]


def _plane(extent_v: float = 12.0) -> pd.DataFrame:
    us, vs = np.linspace(-4, 44, 9), np.linspace(-0.1 * extent_v, 1.1 * extent_v, 9)
    tags = dict(split="test", dataset="cifar10", model="resnet20", width=1, sparsity=0.9, k=10, seed=0)
    rows = [dict(u=u, v=v, error=0.1 + 0.001 * ((u - 20) ** 2 + (v - extent_v / 2) ** 2), point=None, **tags)
            for u in us for v in vs]
    rows += [dict(u=0.0, v=0.0, point="origin", **tags), dict(u=40.0, v=0.0, point="p1", **tags),
             dict(u=22.0, v=extent_v, point="p2", **tags)]
    return pd.DataFrame(rows)


def _axes_share(fig) -> float:
    """Fraction of the canvas the plane's axes cover once laid out."""
    fig.canvas.draw()  # constrained layout and the equal aspect take effect at draw time
    ax = _panels(fig)[0]
    box = ax.get_position()
    return box.width * box.height


@pytest.mark.parametrize("extent_v", [12.0, 40.0])
def test_plane_has_a_title_and_uses_its_canvas(extent_v):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = plots.plane(_plane(extent_v))
    FigureCanvasAgg(fig)
    ax = _panels(fig)[0]
    assert "CIFAR-10 · ResNet20 ×1 · S = 90% · k = 10" in ax.get_title()
    assert _axes_share(fig) > 0.35  # main: a narrow strip (about 0.15 of the canvas for the 12:48 grid)
    if extent_v == 40.0:  # near-square grid: drawn to scale
        assert ax.get_aspect() == 1.0 and ax.get_ylabel() == "Plane coordinate v"
    else:  # 14.4 : 48 is beyond 1:3: filled, and the v label says the stretch
        assert ax.get_aspect() == "auto" and "the scale of u" in ax.get_ylabel()


def test_imp_barrier_without_a_bn_reset_curve_does_not_speak_of_bn_reset():
    """The demo's modes are plain and REPAIR: 'without BN reset' beside REPAIR says nothing true of an MLP."""
    rounds = _imp_rounds(bn=True)
    rounds.loc[rounds["mode"] == "bn_reset", "mode"] = "repair"
    labels = [t.get_text() for t in plots.imp_barrier(rounds).legends[0].get_texts()]
    assert labels == ["plain", "REPAIR"]
