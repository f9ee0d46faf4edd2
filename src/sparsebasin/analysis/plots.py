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
- ``baselines(runs, matches, metric, ks)``: accuracy vs sparsity of every
  sparse branch and matching method, one panel per setting and k.
- ``plane(grid, metric)``: Fig 4b. Filled contours with the three anchors,
  titled with its setting, sparsity and k, sized to the anchors' extent.

Axis ranges follow our data: the paper's lines are clipped to our range of k
(or sparsity), and their legend entry says so when they were; a single rewind
point or sparsity gets a narrow range around it, a flat panel a minimum span
(from 0 for barriers, which are never negative).
Flagged runs and non-finite values (``tidy.FLAG_RULE``): a point whose cell
includes runs flagged dead or diverged is ringed in red and the figure's
legend title says which cells; a point, curve or barrier with no finite value
is a red ✕ on the panel's floor labelled "diverged" (a panel with nothing
finite says so in words), so it is never mistaken for a point not run.
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
from . import barriers, names, series, style, tidy
from .tables import ACCURACY_METRICS, aggregate, branch_order, settings

CURVE_METRICS = ("loss", "error")
FLAG_COLOUR = "#CC0000"
FLAGGED_STYLE = {"marker": "o", "markersize": 8, "markerfacecolor": "none", "markeredgecolor": FLAG_COLOUR,
                 "markeredgewidth": 1.0, "linestyle": "none", "zorder": 4}
DIVERGED_STYLE = {"marker": "X", "markersize": 6, "color": FLAG_COLOUR, "linestyle": "none", "zorder": 4,
                  "clip_on": False}
FLAGGED_LABEL = f"{tidy.FLAG_MARK} includes runs flagged dead or diverged"
DIVERGED_LABEL = f"{tidy.DIVERGED} (no finite value)"
MAX_NOTES = 4  # flagged cells named in a figure's legend title; the rest are counted
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


class FigureNotes:
    """What a figure must say about flagged cells: one line per cell, shown as the legend's title."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, where: str, flags) -> None:
        if isinstance(flags, str) and flags and f"{where}: {flags}" not in self.lines:
            self.lines.append(f"{where}: {flags}")

    def text(self) -> str | None:
        if not self.lines:
            return None
        shown = self.lines[:MAX_NOTES]
        more = len(self.lines) - len(shown)
        tail = [f"and {more} more flagged cells (see the tables)"] if more else []
        return "\n".join(f"{tidy.FLAG_MARK} {line}" for line in shown + tail)


def _legend_below(fig: Figure, axes: Iterable, branch_order_first: bool = True, notes: FigureNotes | None = None,
                  fit_labels: bool = False) -> None:
    """One legend for the whole figure, below the panels, one entry per label.

    Branch entries come in the fixed order Dense, IMP, LTH, Naive, Permuted
    (unless ``branch_order_first`` is off); other entries keep drawing order.
    ``notes`` (the flagged cells) become the legend's title. ``fit_labels``
    (on by itself when a matching series is labelled): fewer entries per row
    where long labels would run past the figure, which grows to hold them.
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
    if branch_order_first:  # a series ("Permuted · weight matching") sits with its branch, in drawing order
        def rank(lbl: str) -> int:
            head, _, tail = lbl.partition(" · ")
            if lbl in order:
                return order.index(lbl)
            return order.index(head) if head in order and tail and series.is_matching_label(tail) else len(order)

        labels.sort(key=rank)
    per_row = max(1, int(fig.get_figwidth() / 1.3))
    fit_labels = fit_labels or any(series.is_matching_label(lbl.partition(" · ")[2]) for lbl in labels
                                   if " · " in lbl)  # a matching series' label is long
    if fit_labels:  # ~0.055 in per character at the legend's 7 pt, plus the handle
        per_row = max(1, min(per_row, int(fig.get_figwidth() / (0.055 * max(map(len, labels)) + 0.45))))
    rows = math.ceil(len(labels) / per_row)
    if fit_labels:  # room for the legend's rows below the panels, which keep their height
        fig.set_figheight(fig.get_figheight() + 0.16 * rows)
    legend = fig.legend([seen[lbl] for lbl in labels], labels, loc="outside lower center",
                        ncols=math.ceil(len(labels) / rows), frameon=False)
    note = notes.text() if notes is not None else None
    if note:
        legend.set_title(note, prop={"size": 6})
        legend.get_title().set_color(FLAG_COLOUR)


def _mark_flags(ax, agg: pd.DataFrame, x: str, scale: float, where, notes: FigureNotes | None) -> None:
    """Ring the points whose cell includes flagged runs, and put a ✕ on the panel's floor where a point has
    no finite value (``where(row)``: the cell's words for the figure's note)."""
    if "flags" not in agg.columns:
        return
    flagged = agg[agg["flags"].map(lambda f: isinstance(f, str) and bool(f))]
    if flagged.empty:
        return
    finite = flagged[np.isfinite(flagged["mean"].to_numpy(dtype=float))]
    if not finite.empty:
        ax.plot(finite[x].to_numpy(dtype=float) * scale, finite["mean"], label=FLAGGED_LABEL, **FLAGGED_STYLE)
    dead = flagged[~np.isfinite(flagged["mean"].to_numpy(dtype=float))]
    if not dead.empty:
        ax.plot(dead[x].to_numpy(dtype=float) * scale, np.zeros(len(dead)), label=DIVERGED_LABEL,
                transform=ax.get_xaxis_transform(), **DIVERGED_STYLE)
    for _, r in flagged.iterrows():
        if notes is not None:
            notes.add(where(r), r["flags"])


def _clip_line(x: np.ndarray, y: np.ndarray, lo: float, hi: float) -> tuple[np.ndarray, np.ndarray, bool]:
    """The part of a line within [lo, hi], with the points where it crosses lo and hi; and whether it was cut."""
    order = np.argsort(x)
    x, y = np.asarray(x, dtype=float)[order], np.asarray(y, dtype=float)[order]
    inside = (x >= lo) & (x <= hi)
    cut = bool((~inside).any())
    if not cut or len(x) < 2:
        return x[inside], y[inside], cut
    xs = [v for v in (lo, hi) if x[0] < v < x[-1] and not np.isclose(x, v).any()]
    xx = np.concatenate([x[inside], xs])
    yy = np.concatenate([y[inside], np.interp(xs, x, y)]) if xs else y[inside]
    order = np.argsort(xx)
    return xx[order], yy[order], cut


def _fit_x(ax, values, pad_single: float, integer: bool = False) -> tuple[float, float]:
    """x range of our data: 4% margins, or ±``pad_single`` around a single value (ticked there)."""
    values = np.asarray(sorted(set(np.asarray(values, dtype=float))), dtype=float)
    lo, hi = float(values.min()), float(values.max())
    if np.isclose(lo, hi):
        ax.set_xlim(lo - pad_single, hi + pad_single)
        ax.set_xticks([lo])
    else:
        pad = 0.04 * (hi - lo)
        ax.set_xlim(lo - pad, hi + pad)
        if integer:
            ax.xaxis.set_major_locator(MaxNLocator(nbins=6, integer=True))
    return lo, hi


def _min_span(ax, span: float, floor: float | None = None) -> None:
    """At least ``span`` of y range (a flat line otherwise fills the panel with noise-level ticks); from
    ``floor`` when the data never go below it (barriers are >= 0)."""
    lo, hi = ax.get_ylim()
    if floor is not None and lo < floor <= _data_min(ax):
        lo = floor
    if hi - lo < span:
        mid = (lo + hi) / 2
        lo, hi = (floor, floor + span) if floor is not None and mid - span / 2 < floor else (mid - span / 2, mid + span / 2)
    ax.set_ylim(lo, hi)


def _data_min(ax) -> float:
    ys = [np.asarray(line.get_ydata(), dtype=float) for line in ax.get_lines()
          if line.get_transform() == ax.transData or line.get_transform().contains_branch(ax.transData)]
    ys = [y[np.isfinite(y)] for y in ys]
    ys = [y for y in ys if y.size]
    return float(min(y.min() for y in ys)) if ys else math.inf


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


def _reference_lines(ax, part: pd.DataFrame, metric: str, sparsity: float | None, where: str = "",
                     notes: FigureNotes | None = None) -> None:
    """Dense (dashed) and, at ``sparsity``, IMP (dotted) as horizontal lines, flagged runs noted."""
    for branch in ("dense", "imp"):
        sel = part[part["branch"] == branch]
        if branch == "imp":
            if sparsity is None or "sparsity" not in part.columns:
                continue
            sel = sel[np.isclose(sel["sparsity"], sparsity)]
        if sel.empty:
            continue
        agg = aggregate(sel, [], metric, scale=100.0).iloc[0]
        if not agg["n"] and not agg["n_nonfinite"]:
            continue
        line_style = {k: v for k, v in style.branch(branch).items() if k != "marker"}
        if np.isfinite(agg["mean"]):
            ax.axhline(agg["mean"], label=names.branch(branch), **line_style)
        if notes is not None and agg["flags"]:
            notes.add(" · ".join(x for x in (where, names.branch(branch)) if x), agg["flags"])


def _paper_lines(ax, reference: pd.DataFrame | None, setting: dict, metric: str, x: str, where: dict,
                 scale: float = 1.0, span: tuple[float, float] | None = None) -> bool:
    """The paper's value of each branch in this panel (``where``: the panel's fixed sparsity or k), if any,
    clipped to ``span`` (our x range, in plotted units); returns whether a line was clipped."""
    if reference is None or reference.empty:
        return False
    ref = reference[reference["metric"] == metric]
    for col, value in {**{k: setting.get(k) for k in ("dataset", "model")}, **where}.items():
        if value is None:
            continue
        ref = ref[np.isclose(ref[col], float(value))] if col != "dataset" and col != "model" else ref[ref[col] == value]
    if "width" in setting and setting["width"] is not None:
        ref = ref[np.isclose(ref["width"], float(setting["width"]))]
    clipped = False
    for b in branch_order(ref["branch"]):
        part = ref[ref["branch"] == b].sort_values(x)
        xs, ys = part[x].to_numpy(dtype=float) * scale, part["mean"].to_numpy(dtype=float)
        if span is not None:
            xs, ys, cut = _clip_line(xs, ys, *span)
            clipped |= cut
        if len(xs):
            ax.plot(xs, ys, label=style.PAPER_LABEL, **style.paper(b))
    return clipped


def _clip_note(fig: Figure, what: str) -> None:
    """Say in the legend that the paper's lines were cut at the edge of our range (``what``: "k", ...)."""
    for ax in fig.axes:
        for line in ax.get_lines():
            if line.get_label() == style.PAPER_LABEL:
                line.set_label(f"{style.PAPER_LABEL} (clipped to our {what} range)")


def _plot_branches(ax, cell: pd.DataFrame, x: str, metric: str, scale: float, where, notes: FigureNotes,
                   tags: list[str] | None = None) -> None:
    """Each series' mean ± std over seeds against ``x``, flagged points ringed: a sparse branch, and for the
    runs that depend on the matching one line per matching method and epoch of B (``tags``, ``series``),
    styled by ``series_style``; ``where(row, label)`` words a flagged point."""
    cell = series.assign(cell, tags if tags is not None else series.keys(cell))
    epochs = _epoch_ranks(cell)
    for s in series.order(cell["series"]):
        agg = aggregate(cell[cell["series"] == s], [x], metric, scale=100.0)
        label = series.label_of(s)
        _plot_mean_std(ax, agg, x, label, series_style(s, epochs), scale=scale)
        _mark_flags(ax, agg, x, scale, lambda r, label=label: where(r, label), notes)


def _epoch_ranks(cell: pd.DataFrame) -> dict:
    """Each matching epoch of B in these runs -> 0 (the latest) .. 1 (the earliest)."""
    epochs = sorted({series.parts(s)["match_epoch"] for s in cell["series"]} - {None}, reverse=True)
    return {e: (i / (len(epochs) - 1) if len(epochs) > 1 else 0.0) for i, e in enumerate(epochs)}


def series_style(series_id: str, epoch_ranks: dict | None = None) -> dict:
    """A series' look: its branch's record (colour, marker), its method's line style, its epoch's shade."""
    p = series.parts(series_id)
    rank = (epoch_ranks or {}).get(p["match_epoch"], 0.0) if p["match_epoch"] is not None else 0.0
    return style.series(p["branch"], p["method"], rank)


@_styled
def accuracy_vs_rewind(runs: pd.DataFrame, metric: str = "test_acc", reference: pd.DataFrame | None = None) -> Figure:
    """Accuracy vs rewind point k: rows per setting, one panel per sparsity; ``reference``: the paper's
    values (``sparsebasin.reference.load("accuracy")``) drawn grey under ours."""
    runs = series.blank_independent(tidy.prepare(runs, ["branch", "sparsity", "k"], "the accuracy-vs-rewind figure"))
    _check_metric(metric, ACCURACY_METRICS, runs)
    tags = series.keys(runs)
    sparse = runs[runs["branch"].isin(names.SPARSE_BRANCHES) & runs["k"].notna()]
    if sparse.empty:
        raise UserError(f"{tidy.source_of(runs)}: no lth/naive/permuted runs with a rewind point k; collect the sparse runs")
    rows = settings(runs, ("dataset", "model", "width"))
    rows = [(s, part) for s, part in rows if not part[part["branch"].isin(names.SPARSE_BRANCHES)].empty]
    sparsities = sorted(sparse["sparsity"].dropna().unique())
    fig, axes = _figure(len(rows), len(sparsities))
    notes, clipped = FigureNotes(), False
    used = set()
    for r, (setting, part) in enumerate(rows):
        for c, s in enumerate(sparsities):
            ax = axes[r, c]
            cell = part[part["branch"].isin(names.SPARSE_BRANCHES) & np.isclose(part["sparsity"], s) & part["k"].notna()]
            if cell.empty:
                continue
            used.add((r, c))
            panel = " · ".join(x for x in (_setting_label(setting), f"S = {names.sparsity(s)}") if x)
            _plot_branches(ax, cell, "k", metric, 1.0,
                           lambda row, b: f"{panel} · k = {row['k']:g} · {b}", notes, tags)
            _reference_lines(ax, part, metric, s, panel, notes)
            span = _fit_x(ax, cell["k"], 0.5, integer=True)
            clipped |= _paper_lines(ax, reference, setting, metric, "k", {"sparsity": s}, span=span)
            _min_span(ax, 2.0)
            ax.set_title(panel)
    _hide_unused(axes, used)
    _label_outer(axes, K_LABEL, names.METRIC_LABELS[metric])
    if clipped:
        _clip_note(fig, "k")
    _legend_below(fig, axes, notes=notes)
    return fig


@_styled
def accuracy_vs_sparsity(runs: pd.DataFrame, ks: Sequence[int] = (10, 25, 50, 100), metric: str = "test_acc",
                         reference: pd.DataFrame | None = None) -> Figure:
    """Accuracy vs sparsity: rows per setting, one panel per rewind point k in ``ks`` (``reference`` as above)."""
    runs = series.blank_independent(tidy.prepare(runs, ["branch", "sparsity", "k"], "the accuracy-vs-sparsity figure"))
    _check_metric(metric, ACCURACY_METRICS, runs)
    tags = series.keys(runs)
    sparse = runs[runs["branch"].isin(names.SPARSE_BRANCHES)]
    have = sorted(sparse["k"].dropna().unique())
    ks = [k for k in ks if any(np.isclose(have, k))]
    if not ks:
        raise UserError(f"{tidy.source_of(runs)}: none of the requested rewind points are in the table (have k = {', '.join(f'{k:g}' for k in have)}); pass --ks")
    rows = [(s, part) for s, part in settings(runs, ("dataset", "model", "width"))
            if not part[part["branch"].isin(names.SPARSE_BRANCHES)].empty]
    fig, axes = _figure(len(rows), len(ks))
    notes, clipped = FigureNotes(), False
    used = set()
    for r, (setting, part) in enumerate(rows):
        imp = part[part["branch"] == "imp"].dropna(subset=["sparsity"])
        for c, k in enumerate(ks):
            ax = axes[r, c]
            cell = part[part["branch"].isin(names.SPARSE_BRANCHES) & np.isclose(part["k"], k)]
            if cell.empty:
                continue
            used.add((r, c))
            panel = " · ".join(x for x in (_setting_label(setting), f"k = {k:g}") if x)
            _plot_branches(ax, cell, "sparsity", metric, 100.0,
                           lambda row, b: f"{panel} · S = {names.sparsity(row['sparsity'])} · {b}", notes, tags)
            if not imp.empty:
                agg = aggregate(imp, ["sparsity"], metric, scale=100.0)
                _plot_mean_std(ax, agg, "sparsity", names.branch("imp"), style.branch("imp"), scale=100.0)
                _mark_flags(ax, agg, "sparsity", 100.0,
                            lambda row: f"{_setting_label(setting)} · S = {names.sparsity(row['sparsity'])} · IMP", notes)
            _reference_lines(ax, part, metric, None, _setting_label(setting), notes)
            ours = pd.concat([cell["sparsity"], imp["sparsity"]]).dropna().unique() * 100
            span = _fit_x(ax, ours, 2.5)
            clipped |= _paper_lines(ax, reference, setting, metric, "sparsity", {"k": k}, scale=100.0, span=span)
            ax.set_xticks(sorted(ours))
            _min_span(ax, 2.0)
            ax.set_title(panel)
    _hide_unused(axes, used)
    _label_outer(axes, SPARSITY_LABEL, names.METRIC_LABELS[metric])
    if clipped:
        _clip_note(fig, "sparsity")
    _legend_below(fig, axes, notes=notes)
    return fig


@_styled
def baselines(runs: pd.DataFrame, matches: pd.DataFrame | None = None, metric: str = "test_acc",
              ks: Sequence[int] | None = None) -> Figure:
    """Accuracy vs sparsity of every sparse branch and matching method: one panel per setting (dataset,
    model, width) and rewind point k (``ks``: default every k of the runs), one line per series (the
    branch's record gives colour and marker; permuted has one line per matching method, line style by
    method, and per epoch of B, lighter and hollow for earlier epochs), dense dashed. With ``matches`` the
    first panel of each row says how long each method took to find the permutation."""
    runs = series.blank_independent(tidy.prepare(runs, ["branch", "sparsity", "k"], "the baselines figure"))
    _check_metric(metric, ACCURACY_METRICS, runs)
    tags = series.keys(runs)
    sparse = runs[runs["branch"].isin(names.SPARSE_BRANCHES) & runs["k"].notna() & runs["sparsity"].notna()]
    if sparse.empty:
        raise UserError(f"{tidy.source_of(runs)}: no sparse runs ({', '.join(names.SPARSE_BRANCHES)}) with a "
                        "sparsity and a rewind point k; collect the sparse runs")
    have = sorted(sparse["k"].unique())
    ks = [k for k in (ks if ks else have) if any(np.isclose(have, k))]
    if not ks:
        raise UserError(f"{tidy.source_of(runs)}: none of the requested rewind points are in the table (have k = "
                        f"{', '.join(f'{k:g}' for k in have)}); pass --ks")
    from .baselines import match_seconds

    tagged = series.assign(sparse, tags)
    seconds = match_seconds(matches, tagged)
    setting_cols = [c for c in ("dataset", "model", "width") if c in tagged.columns]
    rows = [(st, part) for st, part in settings(runs, ("dataset", "model", "width"))
            if not part[part["branch"].isin(names.SPARSE_BRANCHES) & part["k"].notna()].empty]
    fig, axes = _figure(len(rows), len(ks))
    notes, used = FigureNotes(), set()
    for r, (setting, part) in enumerate(rows):
        first = True
        for c, k in enumerate(ks):
            ax = axes[r, c]
            cell = part[part["branch"].isin(names.SPARSE_BRANCHES) & part["sparsity"].notna() & part["k"].notna()]
            cell = cell[np.isclose(cell["k"], k)]
            if cell.empty:
                continue
            used.add((r, c))
            panel = " · ".join(x for x in (_setting_label(setting), f"k = {k:g}") if x)
            _plot_branches(ax, cell, "sparsity", metric, 100.0,
                           lambda row, b: f"{panel} · S = {names.sparsity(row['sparsity'])} · {b}", notes, tags)
            _reference_lines(ax, part, metric, None, _setting_label(setting), notes)
            ours = cell["sparsity"].dropna().unique() * 100
            _fit_x(ax, ours, 2.5)
            ax.set_xticks(sorted(ours))
            _min_span(ax, 2.0)
            title = panel
            times = _times(seconds, setting, setting_cols)
            if times and len(rows) > 1:  # several settings: each row's first panel says its own, once
                if first:
                    title += "\nπ found in " + ", ".join(" ".join(x for x in (_short(sid), f"{v[0]:.2g} s") if x)
                                                         for sid, v in times.items())
            elif times:  # one setting: the time sits in the legend entry of its series
                for line in ax.get_lines():
                    for sid, v in times.items():
                        if line.get_label() == series.label_of(sid):
                            line.set_label(f"{line.get_label()} (π in {v[0]:.2g} s)")
            ax.set_title(title)
            first = False
    _hide_unused(axes, used)
    _label_outer(axes, SPARSITY_LABEL, names.METRIC_LABELS[metric])
    _legend_below(fig, axes, notes=notes, fit_labels=True)
    return fig


def _times(seconds: dict, setting: dict, setting_cols: list[str]) -> dict:
    """series id -> (mean, std, n) seconds to find its permutation in ``setting``, in series order."""
    key = tuple(_norm(setting.get(col)) for col in setting_cols)
    found = {sid: v for (*where, sid), v in seconds.items() if tuple(where) == key}
    return {sid: found[sid] for sid in series.order(found)}


def _short(series_id: str) -> str:
    """'weight' or 'weight, B@5' for a panel title."""
    p = series.parts(series_id)
    parts = [p["method"] or "", f"B@{p['match_epoch']:g}" if p["match_epoch"] is not None else ""]
    return ", ".join(x for x in parts if x)


def _norm(v):
    from .baselines import _norm as norm

    return norm(v)


def _matching(series_id: str) -> dict:
    p = series.parts(series_id)
    return {"method": p["method"], "match_epoch": p["match_epoch"]}


# ---------------------------------------------------------------- linear mode connectivity


def _curve_label(metric: str) -> str:
    return "Test loss" if metric == "loss" else "Test error (%)"


def _scale(metric: str) -> float:
    return 100.0 if metric == "error" else 1.0


def _path_combos(df: pd.DataFrame) -> list[tuple[bool, str]]:
    rank = {m: i for i, m in enumerate(names.MODES)}
    combos = {(bool(p), str(m)) for p, m in zip(df["permuted"], df["mode"])}
    return sorted(combos, key=lambda c: (c[0], rank.get(c[1], len(rank)), c[1]))


def _method_combos(df: pd.DataFrame) -> list[tuple[bool, str, str | None]]:
    """(permuted, mode, matching method) of each curve: the method only where the curves carry several (each
    its own panel and barrier line, never averaged; ``series``), else None."""
    methods = series.order_methods(df["method"]) if "method" in df.columns else []
    if len(methods) < 2:
        return [(p, m, None) for p, m in _path_combos(df)]
    rank = {m: i for i, m in enumerate(names.MODES)}
    combos = {(bool(p), str(m), None if series._blank(me) else str(me))
              for p, m, me in zip(df["permuted"], df["mode"], df["method"])}
    return sorted(combos, key=lambda c: (c[0], rank.get(c[1], len(rank)), c[1], series.method_rank(c[2])))


def _with_method(df: pd.DataFrame, method) -> pd.DataFrame:
    """Rows of one matching method (``None``: the table has one, or the rows carry none)."""
    if method is None or "method" not in df.columns:
        return df
    return df[df["method"].astype(str) == str(method)]


def _path_title(permuted: bool, mode_name: str, method=None) -> str:
    label = names.path_kind(permuted, mode_name)
    return label if method is None else f"{label} · {names.method(method)}"


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
    blocks = [(setting, part, _method_combos(part)) for setting, part in settings(curves, ("dataset", "model"))]
    ncols = min(max_cols, max(len(combos) + 1 for _, _, combos in blocks))
    nrows = sum(math.ceil((len(combos) + 1) / ncols) for _, _, combos in blocks)
    fig, axes = _figure(nrows, ncols)
    used = set()
    bar_col = barriers.BARRIER_OF[metric]
    row0 = 0
    notes = FigureNotes()
    for setting, part, combos in blocks:
        slots = [(row0 + i // ncols, i % ncols) for i in range(len(combos) + 1)]
        row0 += math.ceil(len(slots) / ncols)
        used.update(slots)
        widths = sorted(part["width"].unique())
        finite: list[np.ndarray] = []
        for (permuted, mode_name, method), slot in zip(combos, slots):
            ax = axes[slot]
            title = " · ".join(x for x in (_setting_label(setting), _path_title(permuted, mode_name, method)) if x)
            sel = _with_method(part[(part["permuted"] == permuted) & (part["mode"] == mode_name)], method)
            if not np.isfinite(pd.to_numeric(sel[metric], errors="coerce").to_numpy(dtype=float)).any():
                _say_diverged(ax)
            for w in widths:
                agg = aggregate(sel[sel["width"] == w], ["alpha"], metric, scale=_scale(metric))
                if agg.empty:
                    continue
                line = {"color": style.width_colour(w), "linestyle": "-", "marker": "o", "markersize": 2.5}
                _plot_mean_std(ax, agg, "alpha", f"width {names.width(w)}", line)
                _mark_curve(ax, agg, f"{title} · width {names.width(w)}", notes)
                values = (agg["mean"] + agg["std"].fillna(0.0), agg["mean"] - agg["std"].fillna(0.0))
                finite += [v[np.isfinite(v)] for v in map(np.asarray, values)]
            ax.set_title(title)
            ax.set_xlabel(ALPHA_LABEL)
            ax.set_ylabel(label)
            ax.set_xlim(0, 1)
        finite = [v for v in finite if v.size]
        if finite:  # one y scale per setting from its finite values, so panels compare at a glance
            lo, hi = min(v.min() for v in finite), max(v.max() for v in finite)
            pad = 0.05 * (hi - lo) if hi > lo else max(abs(hi), 1.0) * 0.05
            for slot in slots[:-1]:
                axes[slot].set_ylim(lo - pad, hi + pad)
        ax = axes[slots[-1]]
        bars = barriers.barriers_from_curves(part)
        for permuted, mode_name, method in combos:
            sel = _with_method(bars[(bars["permuted"] == permuted) & (bars["mode"] == mode_name)], method)
            agg = aggregate(sel, ["width"], bar_col, scale=_scale(metric)).sort_values("width")
            look = style.path_style(permuted, mode_name)
            if method is not None and method != series.PAPER_METHOD:  # another method: hollow markers
                look["markerfacecolor"] = "none"
            ax.errorbar(agg["width"], agg["mean"], yerr=agg["std"].fillna(0.0), capsize=2,
                        label=_path_title(permuted, mode_name, method), **look)
            _mark_flags(ax, agg, "width", 1.0, lambda r, p=permuted, m=mode_name, me=method: (
                f"{_setting_label(setting)} · {_path_title(p, m, me)} barrier · width {names.width(r['width'])}"),
                notes)
        _min_span(ax, 0.05 if metric == "loss" else 1.0, floor=0.0)
        ax.set_xscale("log", base=2)
        ax.set_xticks(widths, [names.width(w) for w in widths])
        ax.minorticks_off()
        ax.set_xlabel(WIDTH_LABEL)
        ax.set_ylabel("Loss barrier" if metric == "loss" else "Error barrier (%)")
        ax.set_title(" · ".join(x for x in (_setting_label(setting), "barrier vs width") if x))
    _hide_unused(axes, used)
    _legend_below(fig, axes, notes=notes)
    return fig


def _mark_curve(ax, agg: pd.DataFrame, where: str, notes: FigureNotes) -> None:
    """A curve's non-finite points: ✕ on the floor where no seed is finite, a ring where some are not; one
    note per curve; a panel with no finite point at all says so in words."""
    bad = agg[agg["flags"].map(lambda f: isinstance(f, str) and bool(f))]
    if bad.empty:
        return
    dead = bad[~np.isfinite(bad["mean"].to_numpy(dtype=float))]
    part = bad[np.isfinite(bad["mean"].to_numpy(dtype=float))]
    if not dead.empty:
        ax.plot(dead["alpha"], np.zeros(len(dead)), label=DIVERGED_LABEL, transform=ax.get_xaxis_transform(),
                **DIVERGED_STYLE)
    if not part.empty:
        ax.plot(part["alpha"], part["mean"], label=FLAGGED_LABEL, **FLAGGED_STYLE)
    alphas = ", ".join(f"{a:g}" for a in bad["alpha"])
    seeds = int(bad["n"].max() + bad["n_nonfinite"].max())
    notes.add(where, f"non-finite at α = {alphas} ({int(bad['n_nonfinite'].max())} of {seeds} seeds)")


def _say_diverged(ax) -> None:
    """A panel with no finite value at all says so where its curves would be."""
    ax.text(0.5, 0.5, f"{tidy.DIVERGED}: no finite value", transform=ax.transAxes, ha="center", va="center",
            color=FLAG_COLOUR, fontsize=8)


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
    no_bn = _without_batchnorm(rounds)
    if no_bn:  # BN reset is plain for a BN-free model: one line, said so
        rounds = rounds[rounds["mode"] != "bn_reset"]
    bars = barriers.barriers_from_curves(rounds)
    bar_col = barriers.BARRIER_OF[metric]
    panels = settings(bars, ("dataset", "model", "width"))
    fig, axes = _figure(1, len(panels))
    notes = FigureNotes()
    for c, (setting, part) in enumerate(panels):
        ax = axes[0, c]
        combos = _path_combos(part)
        both = len({p for p, _ in combos}) > 1
        for permuted, mode_name in combos:
            sel = part[(part["permuted"] == permuted) & (part["mode"] == mode_name)]
            agg = aggregate(sel, ["imp_iteration"], bar_col, scale=_scale(metric))
            s = style.path_style(permuted, mode_name) if both else style.mode(mode_name)
            lbl = names.path_kind(permuted, mode_name) if both else _imp_mode_label(mode_name, no_bn, combos)
            _plot_mean_std(ax, agg, "imp_iteration", lbl, s)
            _mark_flags(ax, agg, "imp_iteration", 1.0,
                        lambda r, lbl=lbl: f"{_setting_label(setting)} · {lbl} · IMP iteration {r['imp_iteration']:g}",
                        notes)
        _min_span(ax, 1.0 if metric == "error" else 0.05, floor=0.0)
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
    _legend_below(fig, axes, notes=notes)
    return fig


def _without_batchnorm(curves: pd.DataFrame) -> bool:
    """Whether the model has no BatchNorm: interpolate then writes its plain evaluation for BN reset too, so the
    two modes' curves are identical point for point (a BN model's never are)."""
    modes = set(curves["mode"])
    if not {"plain", "bn_reset"} <= modes:
        return False
    keys = [c for c in curves.columns if c not in ("mode", *barriers.MEASURES)]
    metrics = [m for m in ("loss", "acc", "error") if m in curves.columns]
    a = curves[curves["mode"] == "plain"].set_index(keys + ["alpha"])[metrics].sort_index()
    b = curves[curves["mode"] == "bn_reset"].set_index(keys + ["alpha"])[metrics].sort_index()
    if len(a) != len(b) or not a.index.equals(b.index):
        return False
    return bool(np.allclose(a.to_numpy(dtype=float), b.to_numpy(dtype=float), rtol=0, atol=0, equal_nan=True))


def _imp_mode_label(mode_name: str, no_bn: bool, combos) -> str:
    """'without/with BN reset' only where both are drawn (the paper's Fig. 4a pair); else the mode's name."""
    pair = {m for _, m in combos} >= {"plain", "bn_reset"}
    if mode_name == "plain":
        return "plain (no BatchNorm to reset)" if no_bn else "without BN reset" if pair else names.mode(mode_name)
    return "with BN reset" if mode_name == "bn_reset" and pair else names.mode(mode_name)


# ---------------------------------------------------------------- plane


PLANE_ASPECT = (1 / 3, 3.0)  # v extent / u extent drawn to scale inside this range; beyond it, squeezed


@_styled
def plane(grid: pd.DataFrame, metric: str = "error", split: str | None = "test") -> Figure:
    """Fig. 4b: filled contours of the metric on the plane, the three anchors marked.

    Titled with the setting, sparsity and rewind point of its tags. u and v are
    drawn to the same scale (distances on the plane are comparable) with the
    figure shaped to the grid's extent, unless one extent is more than three
    times the other, where the axes fill the panel and the v axis label says
    by how much its scale differs from u's. Grid points whose value came out
    non-finite are left blank and marked ✕.
    """
    grid = tidy.prepare(grid, ["u", "v", "point"], "the plane figure")
    _check_metric(metric, CURVE_METRICS, grid)
    grid = _filter_split(grid, split)
    is_anchor = grid["point"].notna() & (grid["point"].astype(str).str.strip() != "")
    anchors, cells = grid[is_anchor], grid[~is_anchor]
    if anchors.empty:
        raise UserError(f"{tidy.source_of(grid)}: the plane table marks no anchor points (column 'point'); rerun plane")
    present = cells.pivot_table(index="v", columns="u", values="point", aggfunc="size", fill_value=0) \
        if len(cells) else pd.DataFrame()
    if present.shape[0] < 2 or present.shape[1] < 2 or (present.to_numpy() == 0).any():
        raise UserError(f"{tidy.source_of(grid)}: the plane grid is incomplete (need every (u, v) pair of a >= 2x2 grid); rerun plane")
    values = pd.to_numeric(cells[metric], errors="coerce").where(~tidy.nonfinite(cells[metric]))
    z = cells.assign(_z=values).pivot_table(index="v", columns="u", values="_z", aggfunc="mean", dropna=False)
    z = z.reindex(index=present.index, columns=present.columns)
    us, vs = z.columns.to_numpy(dtype=float), z.index.to_numpy(dtype=float)
    ratio = (vs.max() - vs.min()) / (us.max() - us.min())
    to_scale = PLANE_ASPECT[0] <= ratio <= PLANE_ASPECT[1]
    width = style.PANEL_WIDTH  # the axes' width; the colour bar and labels come on top
    height = width * min(max(ratio, 0.6), 1.6) if to_scale else width * 0.8
    fig = Figure(figsize=(width + 1.0, height + 1.3), layout="constrained")
    ax = fig.subplots()
    data = np.ma.masked_invalid(z.to_numpy(dtype=float) * _scale(metric))
    what = "0-1 loss" if metric == "error" else "loss"
    if data.count() >= 3 and np.ptp(data.compressed()) > 0:
        contour = ax.contourf(us, vs, data, levels=15, cmap="magma_r")
        ax.contour(us, vs, data, levels=contour.levels, colors="white", linewidths=0.3, alpha=0.5)
        bar = fig.colorbar(contour, ax=ax, shrink=0.9)
        bar.set_label(f"{(split or 'test').capitalize()} {what}" + (" (%)" if metric == "error" else ""))
    else:
        _say_diverged(ax) if data.count() == 0 else ax.text(
            0.5, 0.5, f"{what} is flat on the plane", transform=ax.transAxes, ha="center", va="center")
    rank = {name: i for i, name in enumerate(style.ANCHOR_LABELS)}
    anchors = anchors.sort_values("point", key=lambda col: col.astype(str).map(lambda n: rank.get(n, len(rank))))
    for a in anchors.itertuples():
        name = str(a.point)
        s = style.ANCHOR_STYLE.get(name, {"color": "#777777", "marker": "x"})
        label = getattr(a, "label", None) if "label" in anchors.columns else None
        label = label if isinstance(label, str) and label else style.ANCHOR_LABELS.get(name, name)
        ax.plot([a.u], [a.v], linestyle="none", markersize=7, markeredgecolor="white", markeredgewidth=1.0,
                label=label, **s)
    bad = np.argwhere(np.ma.getmaskarray(data))
    if len(bad):
        ax.plot(us[bad[:, 1]], vs[bad[:, 0]], label=f"{tidy.DIVERGED} (non-finite)", **{**DIVERGED_STYLE, "markersize": 4})
    ax.set_xlim(us.min(), us.max())
    ax.set_ylim(vs.min(), vs.max())
    ax.grid(False)
    ax.set_xlabel("Plane coordinate u")
    if to_scale:
        ax.set_aspect("equal", adjustable="box")
        ax.set_ylabel("Plane coordinate v")
    else:  # say how much v is stretched (or squeezed) against u
        ax.set_ylabel(f"Plane coordinate v (drawn ×{(height / width) / ratio:.2g} the scale of u)")
    ax.set_title(_plane_title(grid))
    _legend_below(fig, [ax], branch_order_first=False)
    return fig


def _plane_title(grid: pd.DataFrame) -> str:
    """'CIFAR-10 · ResNet20 ×1 · S = 90% · k = 10' from the plane's tags (those it has)."""
    def one(col):
        if col not in grid.columns:
            return None
        vals = grid[col].dropna().unique()
        return vals[0] if len(vals) == 1 else None

    parts = [_setting_label({k: one(k) for k in ("dataset", "model", "width")})]
    if one("sparsity") is not None:
        parts.append(f"S = {names.sparsity(one('sparsity'))}")
    if one("k") is not None:
        parts.append(f"k = {float(one('k')):g}")
    if one("seed") is not None:
        parts.append(f"seed {float(one('seed')):g}")
    title = " · ".join(p for p in parts if p)
    return f"{title}\nplane through dense A, LTH and permuted" if title else "Plane through dense A, LTH and permuted"


KINDS = {
    "accuracy_vs_rewind": accuracy_vs_rewind,
    "accuracy_vs_sparsity": accuracy_vs_sparsity,
    "lmc_width": lmc_width,
    "imp_barrier": imp_barrier,
    "plane": plane,
    "baselines": baselines,
}
