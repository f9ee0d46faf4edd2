"""Paper figures from tidy tables (see ``tidy`` for the columns each expects).

Every function takes DataFrames, returns a ``matplotlib.figure.Figure`` (no
pyplot state, no display needed) and never reads files; save it with
``outputs.save_figure``. Lines are mean over seeds, bands ± one sample std
(ddof=1) when a point has two or more seeds. Legends sit below the panels so
they never cover data.

- ``accuracy_vs_rewind(runs, metric, reference)``: Figs 5-8, 11. Rows per setting
  (dataset, model, width), one panel per sparsity; LTH/naive/permuted vs k,
  dense dashed, IMP dotted; with ``reference`` the paper's values as thin grey
  dashed lines with hollow markers ("paper"), drawn under ours.
- ``accuracy_vs_sparsity(runs, ks, metric)``: Figs 9-10. One panel per k.
- ``lmc_width(curves, metric, split)``: Fig 3. One panel per (matching, mode)
  with one curve per width, plus a barrier-vs-width panel.
- ``imp_barrier(rounds, metric, split)``: Fig 4a. Barrier vs IMP round per mode.
- ``plane(grid, metric)``: Fig 4b. Filled contours with the three anchors.
"""

from __future__ import annotations

import functools
import math
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ..errors import UserError
from . import barriers, names, style, tidy
from .tables import ACCURACY_METRICS, aggregate, branch_order, settings

CURVE_METRICS = ("loss", "error")
K_LABEL = "Rewind point k (epochs)"
SPARSITY_LABEL = "Sparsity (%)"
ALPHA_LABEL = "Interpolation weight α"
WIDTH_LABEL = "Width multiplier"


# ---------------------------------------------------------------- shared pieces


def _styled(fn):
    """Build the figure under the shared rcParams (fonts and lines are fixed at creation)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with style.context():
            return fn(*args, **kwargs)

    return wrapper


def _figure(nrows: int, ncols: int) -> tuple[Figure, np.ndarray]:
    fig = Figure(figsize=(style.PANEL_WIDTH * ncols, style.PANEL_HEIGHT * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def _legend_below(fig: Figure, axes: Iterable, branch_order_first: bool = True) -> None:
    """One legend for the whole figure, below the panels, one entry per label.

    Branch entries come in the fixed order Dense, IMP, LTH, Naive, Permuted
    (unless ``branch_order_first`` is off); other entries keep drawing order.
    """
    seen: dict[str, object] = {}
    for ax in np.ravel(list(axes)):
        for handle, label in zip(*ax.get_legend_handles_labels()):
            if not label.startswith("_"):
                seen.setdefault(label, handle)
    if not seen:
        return
    order = [names.branch(b) for b in names.BRANCHES]
    labels = list(seen)
    if branch_order_first:
        labels.sort(key=lambda lbl: order.index(lbl) if lbl in order else len(order))
    per_row = max(1, int(fig.get_figwidth() / 1.3))
    rows = math.ceil(len(labels) / per_row)
    fig.legend([seen[lbl] for lbl in labels], labels, loc="outside lower center",
               ncols=math.ceil(len(labels) / rows), frameon=False)


def _band(ax, x, mean, std, colour) -> None:
    std = np.asarray(std, dtype=float)
    ok = ~np.isnan(std)
    if ok.any():
        x, mean, std = np.asarray(x)[ok], np.asarray(mean)[ok], std[ok]
        ax.fill_between(x, mean - std, mean + std, color=colour, alpha=style.BAND_ALPHA, linewidth=0)


def _plot_mean_std(ax, agg: pd.DataFrame, x: str, label: str, line_style: dict, scale: float = 1.0) -> None:
    agg = agg.sort_values(x)
    xs = agg[x].to_numpy(dtype=float) * scale
    ax.plot(xs, agg["mean"], label=label, **line_style)
    _band(ax, xs, agg["mean"].to_numpy(dtype=float), agg["std"].to_numpy(dtype=float), line_style["color"])


def _hide_unused(axes: np.ndarray, used: set) -> None:
    for idx, ax in np.ndenumerate(axes):
        if idx not in used:
            ax.set_visible(False)


def _label_outer(axes: np.ndarray, xlabel: str, ylabel: str) -> None:
    """x label on the lowest visible panel of each column, y label on the first visible one of each row."""
    nrows, ncols = axes.shape
    for c in range(ncols):
        visible = [r for r in range(nrows) if axes[r, c].get_visible()]
        if visible:
            axes[visible[-1], c].set_xlabel(xlabel)
    for r in range(nrows):
        visible = [c for c in range(ncols) if axes[r, c].get_visible()]
        if visible:
            axes[r, visible[0]].set_ylabel(ylabel)


def _setting_label(setting: dict) -> str:
    return names.setting(setting) or ""


def _check_metric(metric: str, allowed: Sequence[str], df: pd.DataFrame) -> None:
    if metric not in allowed:
        raise UserError(f"--metric {metric!r} does not fit this figure; choose one of {', '.join(allowed)}")
    if metric not in df.columns:
        raise UserError(f"{tidy.source_of(df)}: column {metric!r} is missing; collect results that report it")


def _filter_split(df: pd.DataFrame, split: str | None) -> pd.DataFrame:
    if split is None or "split" not in df.columns:
        return df
    out = df[df["split"] == split]
    if out.empty:
        have = ", ".join(sorted(map(str, df["split"].unique())))
        raise UserError(f"{tidy.source_of(df)}: no rows with split={split!r} (have {have}); pass --split with one of those")
    return out


# ---------------------------------------------------------------- accuracy figures


def _reference_lines(ax, part: pd.DataFrame, metric: str, sparsity: float | None) -> None:
    dense = part[part["branch"] == "dense"][metric].dropna()
    if not dense.empty:
        ax.axhline(dense.mean() * 100, label=names.branch("dense"), **{k: v for k, v in style.branch("dense").items() if k != "marker"})
    if sparsity is not None and "sparsity" in part.columns:
        imp = part[(part["branch"] == "imp") & np.isclose(part["sparsity"], sparsity)][metric].dropna()
        if not imp.empty:
            ax.axhline(imp.mean() * 100, label=names.branch("imp"), **{k: v for k, v in style.branch("imp").items() if k != "marker"})


def _paper_lines(ax, reference: pd.DataFrame | None, setting: dict, metric: str, x: str, where: dict,
                 scale: float = 1.0) -> None:
    """The paper's value of each branch in this panel (``where``: the panel's fixed sparsity or k), if any."""
    if reference is None or reference.empty:
        return
    ref = reference[reference["metric"] == metric]
    for col, value in {**{k: setting.get(k) for k in ("dataset", "model")}, **where}.items():
        if value is None:
            continue
        ref = ref[np.isclose(ref[col], float(value))] if col != "dataset" and col != "model" else ref[ref[col] == value]
    if "width" in setting and setting["width"] is not None:
        ref = ref[np.isclose(ref["width"], float(setting["width"]))]
    for b in branch_order(ref["branch"]):
        part = ref[ref["branch"] == b].sort_values(x)
        ax.plot(part[x].to_numpy(dtype=float) * scale, part["mean"], label=style.PAPER_LABEL, **style.paper(b))


@_styled
def accuracy_vs_rewind(runs: pd.DataFrame, metric: str = "test_acc", reference: pd.DataFrame | None = None) -> Figure:
    """Accuracy vs rewind point k: rows per setting, one panel per sparsity; ``reference``: the paper's
    values (``sparsebasin.reference.load("accuracy")``) drawn grey under ours."""
    runs = tidy.prepare(runs, ["branch", "sparsity", "k"], "the accuracy-vs-rewind figure")
    tidy.check_single_matching(runs)
    _check_metric(metric, ACCURACY_METRICS, runs)
    sparse = runs[runs["branch"].isin(names.SPARSE_BRANCHES) & runs["k"].notna()]
    if sparse.empty:
        raise UserError(f"{tidy.source_of(runs)}: no lth/naive/permuted runs with a rewind point k; collect the sparse runs")
    rows = settings(runs, ("dataset", "model", "width"))
    rows = [(s, part) for s, part in rows if not part[part["branch"].isin(names.SPARSE_BRANCHES)].empty]
    sparsities = sorted(sparse["sparsity"].dropna().unique())
    fig, axes = _figure(len(rows), len(sparsities))
    used = set()
    for r, (setting, part) in enumerate(rows):
        for c, s in enumerate(sparsities):
            ax = axes[r, c]
            cell = part[part["branch"].isin(names.SPARSE_BRANCHES) & np.isclose(part["sparsity"], s) & part["k"].notna()]
            if cell.empty:
                continue
            used.add((r, c))
            for b in branch_order(cell["branch"]):
                agg = aggregate(cell[cell["branch"] == b], ["k"], metric, scale=100.0)
                _plot_mean_std(ax, agg, "k", names.branch(b), style.branch(b))
            _reference_lines(ax, part, metric, s)
            _paper_lines(ax, reference, setting, metric, "k", {"sparsity": s})
            ax.xaxis.set_major_locator(MaxNLocator(nbins=6, integer=True))
            ax.set_title(" · ".join(x for x in (_setting_label(setting), f"S = {names.sparsity(s)}") if x))
    _hide_unused(axes, used)
    _label_outer(axes, K_LABEL, names.METRIC_LABELS[metric])
    _legend_below(fig, axes)
    return fig


@_styled
def accuracy_vs_sparsity(runs: pd.DataFrame, ks: Sequence[int] = (10, 25, 50, 100), metric: str = "test_acc",
                         reference: pd.DataFrame | None = None) -> Figure:
    """Accuracy vs sparsity: rows per setting, one panel per rewind point k in ``ks`` (``reference`` as above)."""
    runs = tidy.prepare(runs, ["branch", "sparsity", "k"], "the accuracy-vs-sparsity figure")
    tidy.check_single_matching(runs)
    _check_metric(metric, ACCURACY_METRICS, runs)
    sparse = runs[runs["branch"].isin(names.SPARSE_BRANCHES)]
    have = sorted(sparse["k"].dropna().unique())
    ks = [k for k in ks if any(np.isclose(have, k))]
    if not ks:
        raise UserError(f"{tidy.source_of(runs)}: none of the requested rewind points are in the table (have k = {', '.join(f'{k:g}' for k in have)}); pass --ks")
    rows = [(s, part) for s, part in settings(runs, ("dataset", "model", "width"))
            if not part[part["branch"].isin(names.SPARSE_BRANCHES)].empty]
    fig, axes = _figure(len(rows), len(ks))
    used = set()
    for r, (setting, part) in enumerate(rows):
        imp = part[part["branch"] == "imp"].dropna(subset=["sparsity"])
        for c, k in enumerate(ks):
            ax = axes[r, c]
            cell = part[part["branch"].isin(names.SPARSE_BRANCHES) & np.isclose(part["k"], k)]
            if cell.empty:
                continue
            used.add((r, c))
            for b in branch_order(cell["branch"]):
                agg = aggregate(cell[cell["branch"] == b], ["sparsity"], metric, scale=100.0)
                _plot_mean_std(ax, agg, "sparsity", names.branch(b), style.branch(b), scale=100.0)
            if not imp.empty:
                agg = aggregate(imp, ["sparsity"], metric, scale=100.0)
                _plot_mean_std(ax, agg, "sparsity", names.branch("imp"), style.branch("imp"), scale=100.0)
            _reference_lines(ax, part, metric, None)
            _paper_lines(ax, reference, setting, metric, "sparsity", {"k": k}, scale=100.0)
            ax.set_xticks(sorted(cell["sparsity"].unique() * 100))
            ax.set_title(" · ".join(x for x in (_setting_label(setting), f"k = {k:g}") if x))
    _hide_unused(axes, used)
    _label_outer(axes, SPARSITY_LABEL, names.METRIC_LABELS[metric])
    _legend_below(fig, axes)
    return fig


# ---------------------------------------------------------------- linear mode connectivity


def _curve_label(metric: str) -> str:
    return "Test loss" if metric == "loss" else "Test error (%)"


def _scale(metric: str) -> float:
    return 100.0 if metric == "error" else 1.0


def _path_combos(df: pd.DataFrame) -> list[tuple[bool, str]]:
    rank = {m: i for i, m in enumerate(names.MODES)}
    combos = {(bool(p), str(m)) for p, m in zip(df["permuted"], df["mode"])}
    return sorted(combos, key=lambda c: (c[0], rank.get(c[1], len(rank)), c[1]))


@_styled
def lmc_width(curves: pd.DataFrame, metric: str = "loss", split: str | None = "test", max_cols: int = 3) -> Figure:
    """Fig. 3: metric along the linear path, one curve per width, per (matching, mode); barrier vs width.

    Each setting (dataset, model) gets one panel per interpolation setting
    present (naive/permuted x plain/BN reset/REPAIR) and a last panel with the
    barrier vs width, wrapped into rows of ``max_cols`` panels.
    """
    curves = tidy.prepare(curves, ["alpha", "mode", "permuted", "width"], "the LMC-vs-width figure")
    _check_metric(metric, CURVE_METRICS, curves)
    curves = _filter_split(curves, split)
    label = _curve_label(metric).replace("Test", split.capitalize() if split else "Test")
    blocks = [(setting, part, _path_combos(part)) for setting, part in settings(curves, ("dataset", "model"))]
    ncols = min(max_cols, max(len(combos) + 1 for _, _, combos in blocks))
    nrows = sum(math.ceil((len(combos) + 1) / ncols) for _, _, combos in blocks)
    fig, axes = _figure(nrows, ncols)
    used = set()
    bar_col = barriers.BARRIER_OF[metric]
    row0 = 0
    for setting, part, combos in blocks:
        slots = [(row0 + i // ncols, i % ncols) for i in range(len(combos) + 1)]
        row0 += math.ceil(len(slots) / ncols)
        used.update(slots)
        widths = sorted(part["width"].unique())
        for (permuted, mode_name), slot in zip(combos, slots):
            ax = axes[slot]
            sel = part[(part["permuted"] == permuted) & (part["mode"] == mode_name)]
            for w in widths:
                agg = aggregate(sel[sel["width"] == w], ["alpha"], metric, scale=_scale(metric))
                if agg.empty:
                    continue
                line = {"color": style.width_colour(w), "linestyle": "-", "marker": "o", "markersize": 2.5}
                _plot_mean_std(ax, agg, "alpha", f"width {names.width(w)}", line)
            ax.set_title(" · ".join(x for x in (_setting_label(setting), names.path_kind(permuted, mode_name)) if x))
            ax.set_xlabel(ALPHA_LABEL)
            ax.set_ylabel(label)
            ax.set_xlim(0, 1)
        curve_axes = [axes[slot] for slot in slots[:-1]]
        lows, highs = zip(*(a.get_ylim() for a in curve_axes))
        for a in curve_axes:  # one y scale per setting, so panels compare at a glance
            a.set_ylim(min(lows), max(highs))
        ax = axes[slots[-1]]
        bars = barriers.barriers_from_curves(part)
        for permuted, mode_name in combos:
            sel = bars[(bars["permuted"] == permuted) & (bars["mode"] == mode_name)]
            agg = aggregate(sel, ["width"], bar_col, scale=_scale(metric)).sort_values("width")
            ax.errorbar(agg["width"], agg["mean"], yerr=agg["std"].fillna(0.0), capsize=2,
                        label=names.path_kind(permuted, mode_name), **style.path_style(permuted, mode_name))
        ax.set_xscale("log", base=2)
        ax.set_xticks(widths, [names.width(w) for w in widths])
        ax.minorticks_off()
        ax.set_xlabel(WIDTH_LABEL)
        ax.set_ylabel("Loss barrier" if metric == "loss" else "Error barrier (%)")
        ax.set_title(" · ".join(x for x in (_setting_label(setting), "barrier vs width") if x))
    _hide_unused(axes, used)
    _legend_below(fig, axes)
    return fig


def imp_iterations(rounds: pd.DataFrame) -> pd.DataFrame:
    """``rounds`` with ``imp_iteration``: 1..n along the path of IMP rounds to the target.

    One IMP chain serves every target sparsity, so the rounds on the way to
    0.90 are files 1-7, 9-12 (round 8 is the 0.80 branch): drawing the file
    number would leave a gap and shift the later iterations. The workflow tags
    the iteration; without the tag it is the rank of the round within its run.
    """
    if "imp_iteration" in rounds.columns and rounds["imp_iteration"].notna().all():
        return rounds
    keys = [c for c in ("experiment", "dataset", "model", "width", "seed", "sparsity") if c in rounds.columns]
    rank = (rounds.groupby(keys, dropna=False)["round"].rank(method="dense") if keys
            else rounds["round"].rank(method="dense"))
    return rounds.assign(imp_iteration=rank.astype(float))


@_styled
def imp_barrier(rounds: pd.DataFrame, metric: str = "error", split: str | None = "test") -> Figure:
    """Fig. 4a: barrier between dense A and each IMP round's model, per interpolation mode."""
    rounds = tidy.prepare(rounds, ["alpha", "mode", "round"], "the IMP-barrier figure")
    _check_metric(metric, CURVE_METRICS, rounds)
    rounds = _filter_split(rounds, split)
    if "permuted" not in rounds.columns:
        rounds = rounds.assign(permuted=False)
    rounds = imp_iterations(rounds)
    bars = barriers.barriers_from_curves(rounds)
    bar_col = barriers.BARRIER_OF[metric]
    panels = settings(bars, ("dataset", "model", "width"))
    fig, axes = _figure(1, len(panels))
    for c, (setting, part) in enumerate(panels):
        ax = axes[0, c]
        combos = _path_combos(part)
        both = len({p for p, _ in combos}) > 1
        for permuted, mode_name in combos:
            sel = part[(part["permuted"] == permuted) & (part["mode"] == mode_name)]
            agg = aggregate(sel, ["imp_iteration"], bar_col, scale=_scale(metric))
            s = style.path_style(permuted, mode_name) if both else style.mode(mode_name)
            lbl = names.path_kind(permuted, mode_name) if both else (
                "with BN reset" if mode_name == "bn_reset" else "without BN reset" if mode_name == "plain" else names.mode(mode_name))
            _plot_mean_std(ax, agg, "imp_iteration", lbl, s)
        steps = sorted(part["imp_iteration"].unique())
        ax.set_xticks(steps, [f"{int(r)}" for r in steps])
        ax.set_xlabel("IMP iteration")
        if "round_sparsity" in part.columns:
            sp = part.groupby("imp_iteration")["round_sparsity"].first()
            top = ax.secondary_xaxis("top")
            top.set_xticks(steps, [names.percent(sp[r]) for r in steps])
            top.tick_params(axis="x", labelrotation=90 if len(steps) > 5 else 0)
            top.set_xlabel("Sparsity (%)")
        ax.set_ylabel("Loss barrier" if metric == "loss" else "Error barrier (%)")
        title = _setting_label(setting)
        ax.set_title(f"{title} · dense A vs IMP round" if title else "Dense A vs IMP round")
    _legend_below(fig, axes)
    return fig


# ---------------------------------------------------------------- plane


@_styled
def plane(grid: pd.DataFrame, metric: str = "error", split: str | None = "test") -> Figure:
    """Fig. 4b: filled contours of the metric on the plane, the three anchors marked."""
    grid = tidy.prepare(grid, ["u", "v", "point"], "the plane figure")
    _check_metric(metric, CURVE_METRICS, grid)
    grid = _filter_split(grid, split)
    is_anchor = grid["point"].notna() & (grid["point"].astype(str).str.strip() != "")
    anchors, cells = grid[is_anchor], grid[~is_anchor]
    if anchors.empty:
        raise UserError(f"{tidy.source_of(grid)}: the plane table marks no anchor points (column 'point'); rerun plane")
    z = cells.pivot_table(index="v", columns="u", values=metric, aggfunc="mean")
    if z.isna().any().any() or z.shape[0] < 2 or z.shape[1] < 2:
        raise UserError(f"{tidy.source_of(grid)}: the plane grid is incomplete (need every (u, v) pair of a >= 2x2 grid); rerun plane")
    fig = Figure(figsize=(style.PANEL_WIDTH + 0.6, style.PANEL_WIDTH + 0.3), layout="constrained")
    ax = fig.subplots()
    values = z.to_numpy() * _scale(metric)
    contour = ax.contourf(z.columns.to_numpy(), z.index.to_numpy(), values, levels=15, cmap="magma_r")
    ax.contour(z.columns.to_numpy(), z.index.to_numpy(), values, levels=contour.levels, colors="white", linewidths=0.3, alpha=0.5)
    bar = fig.colorbar(contour, ax=ax, shrink=0.9)
    what = "0-1 loss" if metric == "error" else "loss"
    bar.set_label(f"{(split or 'test').capitalize()} {what}" + (" (%)" if metric == "error" else ""))
    rank = {name: i for i, name in enumerate(style.ANCHOR_LABELS)}
    anchors = anchors.sort_values("point", key=lambda col: col.astype(str).map(lambda n: rank.get(n, len(rank))))
    for a in anchors.itertuples():
        name = str(a.point)
        s = style.ANCHOR_STYLE.get(name, {"color": "#777777", "marker": "x"})
        label = getattr(a, "label", None) if "label" in anchors.columns else None
        label = label if isinstance(label, str) and label else style.ANCHOR_LABELS.get(name, name)
        ax.plot([a.u], [a.v], linestyle="none", markersize=7, markeredgecolor="white", markeredgewidth=1.0,
                label=label, **s)
    ax.set_aspect("equal", adjustable="box")
    ax.grid(False)
    ax.set_xlabel("Plane coordinate u")
    ax.set_ylabel("Plane coordinate v")
    _legend_below(fig, [ax], branch_order_first=False)
    return fig


KINDS = {
    "accuracy_vs_rewind": accuracy_vs_rewind,
    "accuracy_vs_sparsity": accuracy_vs_sparsity,
    "lmc_width": lmc_width,
    "imp_barrier": imp_barrier,
    "plane": plane,
}
