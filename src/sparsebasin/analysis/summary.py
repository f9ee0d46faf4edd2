"""Per-experiment ``summary.md``: does permuting the mask close the naive-to-LTH gap?

For each setting (dataset, model), width and sparsity:

- LTH, naive and permuted test accuracy (%): mean over seeds at each k, then
  averaged over the rewind points k each branch has (every k weighs the same);
- permuted − naive (percentage points): paired by seed (the naive and
  permuted runs of a seed share init B and mask m_A), averaged over k per seed,
  then mean ± std (ddof=1) over seeds;
- gap closed = (permuted − naive) / (LTH − naive), from the k-averaged means.
  When LTH is not at least ``gap_floor_pp`` above naive the ratio is
  meaningless and shown as ``n/a``;
- beside them, per width when given: the mean matched correlation of the
  permutation (``mean_correlation`` from ``match``, mean ± std over seeds) and
  the loss barrier after matching (test split when present; REPAIR, else BN
  reset, else plain).

A second table repeats the comparison per rewind point k, and a last one
lists per width the dense accuracy, matched correlation and every barrier
(naive/permuted × mode). Experiments without a naive/permuted sweep get only
that last table. Inputs are tidy tables (see ``tidy``): runs, optionally
matches and barriers (or LMC curves).
"""

from __future__ import annotations

import math

import pandas as pd

from ..errors import UserError
from . import barriers, names, tidy
from .tables import (ALL_WEIGHTS_NOTE, aggregate, fmt_mean_std, markdown_table, present, settings, sparsity_cell,
                     weight_sparsity_by_cell)

MODE_PRIORITY = ("repair", "bn_reset", "plain")


def gap_closed(lth: float, naive: float, permuted: float, gap_floor_pp: float = 0.1) -> float:
    """(permuted − naive) / (LTH − naive), NaN when LTH − naive < ``gap_floor_pp``."""
    if any(v is None or math.isnan(v) for v in (lth, naive, permuted)) or lth - naive < gap_floor_pp:
        return math.nan
    return (permuted - naive) / (lth - naive)


def _fmt_gap(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{100 * value:.0f}%"


def _fmt_pct(value: float) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:.2f}"


def _fmt_diff(mean: float, std: float, n: float) -> str:
    if mean is None or math.isnan(mean):
        return "–"
    if n < 2 or math.isnan(std):
        return f"{mean:+.2f} (n={int(n)})"
    return f"{mean:+.2f} ± {std:.2f}"


def branch_comparison(runs: pd.DataFrame, metric: str = "test_acc", gap_floor_pp: float = 0.1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-k and k-averaged comparison frames of LTH, naive and permuted.

    Columns: setting keys, ``sparsity`` (and ``k`` for the per-k frame),
    ``lth, naive, permuted`` (mean %), ``diff_mean, diff_std, diff_n``
    (paired permuted − naive in pp), ``gap_closed`` (fraction, NaN if guarded).
    """
    runs = tidy.prepare(runs, ["branch", "sparsity", "k", "seed", metric], "the summary")
    tidy.check_single_matching(runs)
    sparse = runs[runs["branch"].isin(names.SPARSE_BRANCHES) & runs["k"].notna() & runs[metric].notna()]
    have = set(sparse["branch"])
    if not {"naive", "permuted"} <= have:
        raise UserError(f"{tidy.source_of(runs)}: the summary needs both naive and permuted runs (have {', '.join(sorted(have)) or 'none'}); collect all sparse branches")
    keys = present(sparse, ("dataset", "model", "width"))
    cell = keys + ["sparsity", "k"]

    means = sparse.pivot_table(index=cell, columns="branch", values=metric, aggfunc="mean") * 100
    by_seed = sparse.pivot_table(index=cell + ["seed"], columns="branch", values=metric, aggfunc="mean") * 100
    by_seed["diff"] = by_seed["permuted"] - by_seed["naive"]

    per_k = means.reindex(columns=list(names.SPARSE_BRANCHES))
    diff_k = by_seed.groupby(level=cell)["diff"].agg(diff_mean="mean", diff_std=lambda d: d.std(ddof=1), diff_n="count")
    per_k = per_k.join(diff_k).reset_index()

    avg = means.reindex(columns=list(names.SPARSE_BRANCHES)).groupby(level=keys + ["sparsity"]).mean()
    seed_avg = by_seed["diff"].groupby(level=keys + ["sparsity", "seed"]).mean()
    diff_avg = seed_avg.groupby(level=keys + ["sparsity"]).agg(diff_mean="mean", diff_std=lambda d: d.std(ddof=1), diff_n="count")
    averaged = avg.join(diff_avg).reset_index()

    for frame in (per_k, averaged):
        frame["gap_closed"] = [gap_closed(r.lth, r.naive, r.permuted, gap_floor_pp) for r in frame.itertuples()]
    return per_k, averaged


def _per_width(table: pd.DataFrame | None, value: str, keys: list[str], what: str) -> pd.DataFrame | None:
    if table is None:
        return None
    if "width" not in table.columns:
        raise UserError(f"{tidy.source_of(table)}: {what} needs a width tag to sit beside the runs; tag the results with --tag width=W")
    on = [k for k in keys if k in table.columns]
    return aggregate(table, on, value)


def _barrier_tables(table: pd.DataFrame | None, keys: list[str]) -> tuple[pd.DataFrame | None, str | None]:
    """All barriers per width (for the last table) and the main-table column's mode."""
    if table is None:
        return None, None
    rows = barriers.ensure_barriers(tidy.prepare(table, ["mode", "permuted"], "the summary's barriers"))
    if "loss_barrier" not in rows.columns:
        raise UserError(f"{tidy.source_of(table)}: barriers need a loss_barrier column (or curves with loss); collect interpolate's output")
    if "split" in rows.columns and (rows["split"] == "test").any():
        rows = rows[rows["split"] == "test"]
    on = [k for k in keys if k in rows.columns]
    if "width" not in on:
        raise UserError(f"{tidy.source_of(table)}: barriers need a width tag; tag interpolate with --tag width=W")
    agg = aggregate(rows, on + ["permuted", "mode"], "loss_barrier")
    permuted_modes = set(agg.loc[agg["permuted"], "mode"])
    main_mode = next((m for m in MODE_PRIORITY if m in permuted_modes), None)
    return agg, main_mode


def _lookup(frame: pd.DataFrame | None, setting: dict, width, extra: dict | None = None) -> pd.Series | None:
    if frame is None:
        return None
    sel = frame
    for k, v in {**setting, "width": width, **(extra or {})}.items():
        if k in sel.columns and v is not None:
            sel = sel[sel[k] == v]
    return sel.iloc[0] if len(sel) else None


def has_sweep(runs: pd.DataFrame) -> bool:
    """Whether the runs include naive and permuted runs with a rewind point (a comparison is possible)."""
    if not {"branch", "k"} <= set(runs.columns):
        return False
    return {"naive", "permuted"} <= set(runs.loc[runs["k"].notna(), "branch"])


def _restrict(frame: pd.DataFrame, setting: dict) -> pd.DataFrame:
    for k, v in setting.items():
        if v is not None and k in frame.columns:
            frame = frame[frame[k] == v]
    return frame


def summary_markdown(runs: pd.DataFrame, matches: pd.DataFrame | None = None, barriers_table: pd.DataFrame | None = None,
                     metric: str = "test_acc", gap_floor_pp: float = 0.1, headline: str | None = None) -> str:
    """The whole ``summary.md`` text (without provenance); ``headline`` (the scorecard's verdict) opens it.

    Experiments without a naive/permuted sweep (e.g. LMC or diversity only)
    still get the per-width table: dense accuracy, matched correlation and
    barriers.
    """
    runs = tidy.prepare(runs, ["branch", metric], "the summary")
    sweep = has_sweep(runs)
    per_k, averaged = branch_comparison(runs, metric, gap_floor_pp) if sweep else (None, None)
    keys = present(runs, ("dataset", "model", "width"))
    corr = _per_width(tidy.prepare(matches, ["mean_correlation"], "the summary's matches") if matches is not None else None,
                      "mean_correlation", keys, "the matched correlation")
    bars, main_mode = _barrier_tables(barriers_table, keys)
    dense = runs[runs["branch"] == "dense"]
    dense_acc = aggregate(dense, keys, metric, scale=100.0) if not dense.empty and "width" in keys else None

    experiment = None
    if "experiment" in runs.columns:
        exps = sorted(map(str, pd.Series(runs["experiment"]).dropna().unique()))
        experiment = ", ".join(exps) if exps else None
    out = [f"**Reproduction:** {headline}", ""] if headline else []
    out += [f"# Summary{': ' + experiment if experiment else ''}", ""]
    if sweep:
        wins = int((averaged["diff_mean"] > 0).sum())
        gaps = averaged["gap_closed"].dropna()
        verdict = f"Permuted beats naive in {wins} of {len(averaged)} (width, sparsity) cells, averaged over k"
        if len(gaps):
            verdict += f"; permuting closes a median {100 * gaps.median():.0f}% of the naive-to-LTH gap"
        out += [verdict + ".", ""]
        out += [
            f"Accuracy: {names.METRIC_LABELS.get(metric, metric)}, mean over seeds, then averaged over the rewind points k. "
            "Permuted − naive is paired by seed (percentage points, mean ± std over seeds). "
            f"Gap closed = (permuted − naive) / (LTH − naive); n/a when LTH is less than {gap_floor_pp:g} pp above naive.",
            "",
        ]
    else:
        out += ["This experiment has no naive/permuted sweep, so there is no branch comparison; per-width results follow.", ""]

    all_weights = weight_sparsity_by_cell(runs, keys) if "sparsity" in runs.columns else {}
    if all_weights and sweep:
        out += [ALL_WEIGHTS_NOTE, ""]
    setting_keys = [k for k in keys if k != "width"]
    for setting, part in settings(runs, setting_keys):
        title = names.setting(setting)
        out += [f"## {title}" if title else "## All runs", ""]
        if sweep:
            out += _comparison_sections(_restrict(averaged, setting), _restrict(per_k, setting), setting, corr, bars,
                                        main_mode, all_weights, setting_keys)
        widths = sorted(part["width"].dropna().unique()) if "width" in part.columns else []
        if widths and (dense_acc is not None or corr is not None or bars is not None):
            out += _per_width_section(setting, widths, dense_acc, corr, bars)
    return "\n".join(out).rstrip() + "\n"


def _comparison_sections(averaged: pd.DataFrame, per_k: pd.DataFrame, setting: dict, corr, bars, main_mode,
                         all_weights: dict | None = None, setting_keys: list[str] = ()) -> list[str]:
    def sparsity(r) -> str:
        key = tuple(setting.get(k) for k in setting_keys) + ((getattr(r, "width", None),) if "width" in keys else ())
        return sparsity_cell(r.sparsity, (all_weights or {}).get(key + (r.sparsity,)))

    keys = [*setting_keys, "width"] if "width" in averaged.columns else list(setting_keys)
    if averaged.empty:
        return ["No naive/permuted runs in this setting.", ""]
    header = ["Width", "Sparsity", "LTH", "Naive", "Permuted", "Permuted − naive (pp)", "Gap closed"]
    if corr is not None:
        header.append("Matched corr.")
    if main_mode is not None:
        header.append(f"Loss barrier ({names.path_kind(True, main_mode)})")
    rows = []
    for r in averaged.sort_values([k for k in ("width", "sparsity") if k in averaged.columns]).itertuples():
        width = getattr(r, "width", None)
        row = [names.width(width) if width is not None else "–", sparsity(r),
               _fmt_pct(r.lth), _fmt_pct(r.naive), _fmt_pct(r.permuted),
               _fmt_diff(r.diff_mean, r.diff_std, r.diff_n), _fmt_gap(r.gap_closed)]
        if corr is not None:
            c = _lookup(corr, setting, width)
            row.append(fmt_mean_std(c["mean"], c["std"], c["n"], 3) if c is not None else "–")
        if main_mode is not None:
            b = _lookup(bars, setting, width, {"permuted": True, "mode": main_mode})
            row.append(fmt_mean_std(b["mean"], b["std"], b["n"], 3) if b is not None else "–")
        rows.append(row)
    out = ["### Averaged over k", "", markdown_table(header, rows), ""]
    rows = [[names.width(getattr(r, "width", None)) if "width" in per_k.columns else "–", sparsity(r), f"{r.k:g}",
             _fmt_pct(r.lth), _fmt_pct(r.naive), _fmt_pct(r.permuted),
             _fmt_diff(r.diff_mean, r.diff_std, r.diff_n), _fmt_gap(r.gap_closed)]
            for r in per_k.sort_values([c for c in ("width", "sparsity", "k") if c in per_k.columns]).itertuples()]
    out += ["### Per rewind point k", "", markdown_table(header[:2] + ["k"] + header[2:7], rows), ""]
    return out


def _per_width_section(setting: dict, widths: list, dense_acc, corr, bars) -> list[str]:
    """Dense accuracy, matched correlation and every loss barrier (naive/permuted × mode) per width."""
    header = ["Width"]
    combos: list[tuple[bool, str]] = []
    if dense_acc is not None:
        header.append("Dense acc. (%)")
    if corr is not None:
        header.append("Matched corr.")
    if bars is not None:
        sel = _restrict(bars, setting)
        combos = sorted({(bool(p), str(m)) for p, m in zip(sel["permuted"], sel["mode"])},
                        key=lambda c: (c[0], names.MODES.index(c[1]) if c[1] in names.MODES else len(names.MODES)))
        header += [f"Loss barrier ({names.path_kind(p, m)})" for p, m in combos]
    rows = []
    for w in widths:
        row = [names.width(w)]
        for frame, digits in ((dense_acc, 2), (corr, 3)):
            if frame is not None:
                c = _lookup(frame, setting, w)
                row.append(fmt_mean_std(c["mean"], c["std"], c["n"], digits) if c is not None else "–")
        for p, m in combos:
            b = _lookup(bars, setting, w, {"permuted": p, "mode": m})
            row.append(fmt_mean_std(b["mean"], b["std"], b["n"], 3) if b is not None else "–")
        rows.append(row)
    note = "Mean ± std over seeds; barriers on the test split when available."
    return ["### Per width", "", markdown_table(header, rows), "", note, ""]
