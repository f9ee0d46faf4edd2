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

A second table repeats the comparison per rewind point k, with the
one-sided paired test of permuted > naive of each cell (the scorecard's test,
``scorecard.paired_test``: the headline counts these cells, and the summary
prints no second count). A last table lists per width the dense accuracy,
matched correlation and every barrier (naive/permuted × mode); the paper
gives LMC only as a figure, so nothing published sits beside it. With the
scorecard's JSON, the ensembles (Table 1) and early-matching (Table 15)
studies show our cells beside the paper's, from the scorecard's own cells.
Several matching methods or epochs of B (``series``) give one row per permuted
series, never pooled; the headline count stays on the paper's setting. An
experiment with control branches (random mask, A's signs) gets a section saying
which explanation of the transfer the tests support (``baselines.RULE``).
Runs flagged dead or diverged and non-finite values follow ``tidy.FLAG_RULE``
and are marked †N with a footnote. Inputs are tidy tables (see ``tidy``):
runs, optionally matches and barriers (or LMC curves), and the scorecard JSON.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..errors import UserError
from . import barriers, baselines, names, scorecard as scorecard_mod, series, tidy
from .tables import (ALL_WEIGHTS_NOTE, Notes, aggregate, fmt_mean_std, markdown_table, present, settings,
                     sparsity_cell, weight_sparsity_by_cell)

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
    With several matching methods or epochs of B (``series.keys``), one row per
    permuted series, its tags (``method``, ``match_epoch``) as columns.
    """
    runs = tidy.prepare(runs, ["branch", "sparsity", "k", "seed", metric], "the summary")
    # non-finite values stay out of the means (tidy.FLAG_RULE); the tables' † footnotes count them
    sparse = runs[runs["branch"].isin(names.SPARSE_BRANCHES) & runs["k"].notna() & ~tidy.nonfinite(runs[metric])]
    have = set(sparse["branch"])
    if not {"naive", "permuted"} <= have:
        raise UserError(f"{tidy.source_of(runs)}: the summary needs both naive and permuted runs (have {', '.join(sorted(have)) or 'none'}); collect all sparse branches")
    sparse = series.blank_independent(sparse)
    tags = series.keys(sparse)
    if not tags:
        return _branch_comparison(sparse, metric, gap_floor_pp)
    dep = series.dependent(sparse)
    frames = []
    for combo, perm in sparse[dep].groupby(tags, dropna=False, sort=False):
        combo = combo if isinstance(combo, tuple) else (combo,)
        per_k, averaged = _branch_comparison(pd.concat([sparse[~dep], perm]), metric, gap_floor_pp)
        frames.append(tuple(f.assign(**dict(zip(tags, combo))) for f in (per_k, averaged)))
    return tuple(_sort_tags(pd.concat([f[i] for f in frames], ignore_index=True), tags) for i in (0, 1))


def _sort_tags(frame: pd.DataFrame, tags: list[str]) -> pd.DataFrame:
    """Rows by setting, sparsity, k, then method (activation, weight, ...) and epoch of B."""
    keys = [c for c in ("dataset", "model", "width", "sparsity", "k") if c in frame.columns]
    methods = series.order_methods(frame["method"]) if "method" in tags else []
    rank = frame["method"].map(lambda m: methods.index(m) if m in methods else -1) if methods else \
        pd.Series(0, index=frame.index)
    epoch = frame["match_epoch"] if "match_epoch" in tags else pd.Series(0.0, index=frame.index)
    return (frame.assign(_m=rank, _e=epoch).sort_values([*keys, "_m", "_e"], kind="stable")
            .drop(columns=["_m", "_e"]).reset_index(drop=True))


def _branch_comparison(sparse: pd.DataFrame, metric: str, gap_floor_pp: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``branch_comparison`` of runs with one permuted series."""
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
    if "epoch_b" in table.columns:  # the matching's epoch of B: its tag, else the summary's own field
        epoch = pd.to_numeric(table["match_epoch"], errors="coerce") if "match_epoch" in table.columns else None
        b = pd.to_numeric(table["epoch_b"], errors="coerce")
        table = table.assign(match_epoch=b if epoch is None else epoch.fillna(b))
    tags = (["method"] if _methods(table) else []) + \
        (["match_epoch"] if "match_epoch" in table.columns and table["match_epoch"].nunique() > 1 else [])
    return aggregate(table, on + tags, value)


def _methods(table: pd.DataFrame | None) -> list[str]:
    """The matching methods of a matches or barriers table when it holds several (each its own series), else []."""
    if table is None or "method" not in table.columns:
        return []
    methods = series.order_methods(table["method"])
    return methods if len(methods) > 1 else []


def _corr_tags(corr: pd.DataFrame | None) -> list[str]:
    """The series tags the matched correlation is split by (several methods or epochs of B)."""
    if corr is None:
        return []
    return [t for t in series.TAGS if t in corr.columns]


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
    agg = aggregate(rows, on + ["permuted", "mode"] + (["method"] if _methods(rows) else []), "loss_barrier")
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
                     metric: str = "test_acc", gap_floor_pp: float = 0.1, headline: str | None = None,
                     card: dict | None = None) -> str:
    """The whole ``summary.md`` text (without provenance); the scorecard's headline opens it (``card``: the
    scorecard JSON, or just its ``headline``).

    Experiments without a naive/permuted sweep (e.g. LMC or diversity only)
    still get the per-width table: dense accuracy, matched correlation and
    barriers, and, from ``card``, their own study's cells beside the paper's.
    """
    runs = tidy.prepare(runs, ["branch", metric], "the summary")
    if card is not None and headline is None:
        headline = card.get("headline")
    sweep = has_sweep(runs)
    runs = series.blank_independent(runs)
    tags = series.keys(runs[runs["branch"].isin(names.SPARSE_BRANCHES)]) if sweep else []
    per_k, averaged = branch_comparison(runs, metric, gap_floor_pp) if sweep else (None, None)
    tests = _tests(runs, metric, tags) if sweep else None
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
        verdict = []
        if not headline:  # without the scorecard, the one count is said here instead (same test, same cells)
            claim = scorecard_mod.claims(runs)[0]
            verdict.append(claim.text()[0].upper() + claim.text()[1:])
        if not tags:
            gaps = averaged["gap_closed"].dropna()
            if len(gaps):
                verdict.append(f"Permuting closes a median {100 * gaps.median():.0f}% of the naive-to-LTH gap "
                               "(cells averaged over k)")
        else:  # one median per matching series, never pooled
            medians = [f"{100 * part['gap_closed'].dropna().median():.0f}% ({_matching_words(part.iloc[0], tags)})"
                       for _, part in averaged.groupby(tags, dropna=False, sort=False)
                       if part["gap_closed"].notna().any()]
            if medians:
                verdict.append("Permuting closes a median of the naive-to-LTH gap of " + ", ".join(medians) +
                               " (cells averaged over k)")
        if verdict:
            out += [". ".join(verdict) + ".", ""]
        out += [
            f"Accuracy: {names.METRIC_LABELS.get(metric, metric)}, mean over seeds, then averaged over the rewind points k. "
            "Permuted − naive is paired by seed (percentage points, mean ± std over seeds). "
            f"Gap closed = (permuted − naive) / (LTH − naive); n/a when LTH is less than {gap_floor_pp:g} pp above naive. "
            f"Per rewind point, each cell's permuted > naive is tested with a {scorecard_mod.CLAIM_TEST} "
            f"(α = {scorecard_mod.CLAIM_ALPHA:g}; fewer than {scorecard_mod.MIN_PAIRS} seeds: too few to test).",
            "",
        ]
        if tags:
            out += ["Permuted runs are one series per matching (" + " and ".join(
                {"method": "method", "match_epoch": "epoch of B matched"}[t] for t in tags) + "): each row compares "
                "one of them with LTH and naive; no two are averaged together. The count above is on the paper's "
                f"setting ({series.PAPER_METHOD} matching of B at the end of its training).", ""]
        out += baselines.summary_section(runs, metric)
    else:
        studies = [label for section, label in (("diversity", "ensembles (Table 1)"),
                                                ("early_matching", "early matching (Table 15)"))
                   if _section_cells(card, section) is not None]
        if barriers_table is not None:
            studies.append("linear mode connectivity per width")
        out += ["This experiment has no naive/permuted sweep, so there is no branch comparison; "
                + (f"its studies follow: {', '.join(studies)}." if studies else "per-width results follow."), ""]
    flagged_runs = _flagged_runs(runs)
    top = len(out)

    all_weights = weight_sparsity_by_cell(runs, keys) if "sparsity" in runs.columns else {}
    if all_weights and sweep:
        out += [ALL_WEIGHTS_NOTE, ""]
    setting_keys = [k for k in keys if k != "width"]
    for setting, part in settings(runs, setting_keys):
        title = names.setting(setting)
        out += [f"## {title}" if title else "## All runs", ""]
        if sweep:
            out += _comparison_sections(_restrict(averaged, setting), _restrict(per_k, setting), setting, corr, bars,
                                        main_mode, all_weights, setting_keys, _restrict(tests, setting),
                                        _restrict(_cell_flags(runs, keys, metric, tags), setting), tags)
        out += _study_sections(card, setting)
        widths = sorted(part["width"].dropna().unique()) if "width" in part.columns else []
        if widths and (dense_acc is not None or corr is not None or bars is not None):
            out += _per_width_section(setting, widths, dense_acc, corr, bars)
        listed = [r for r in flagged_runs if all(r.get(k) == v for k, v in setting.items() if v is not None)]
        if listed:
            out += [f"### Runs flagged dead or diverged ({tidy.FLAG_MARK})", ""]
            out += [f"- {r['where']}: {tidy.label(r['status'])}" + (f": {r['reasons']}" if r["reasons"] else "")
                    for r in listed]
            out += [""]
    body = "\n".join(out[top:])
    if tidy.FLAG_MARK in body or tidy.DIVERGED in body:  # the rule, once, before the first mark
        lead = (f"{tidy.FLAG_MARK} Runs flagged dead or diverged: {len(flagged_runs)} (listed per setting below). "
                if flagged_runs else "")
        out[top:top] = [lead + tidy.FLAG_RULE, ""]
    return "\n".join(out).rstrip() + "\n"


def _tests(runs: pd.DataFrame, metric: str, tags: list[str] = ()) -> pd.DataFrame:
    """Per (dataset, model, width, sparsity, k) and permuted series (``tags``): the scorecard's one-sided paired
    test of permuted > naive."""
    cols = [*scorecard_mod._CELL, *tags, "n", "nonfinite", "mean", "std", "t", "p", "result"]
    if not tags:
        rows = [key | scorecard_mod.paired_test(d) for key, d in
                scorecard_mod._pair_cells(scorecard_mod._by_seed(runs, metric), "permuted", "naive")]
        return pd.DataFrame(rows, columns=cols)
    tagged = series.assign(runs, list(tags))
    by_seed = scorecard_mod._by_seed(tagged, metric, column="series")
    rows = []
    for s in [s for s in series.order(by_seed.columns) if series.parts(s)["branch"] == "permuted"]:
        p = series.parts(s)
        extra = {t: p[t] for t in tags}
        rows += [key | extra | scorecard_mod.paired_test(d) for key, d in scorecard_mod._pair_cells(by_seed, s, "naive")]
    return pd.DataFrame(rows, columns=cols)


def _cell_flags(runs: pd.DataFrame, keys: list[str], metric: str, tags: list[str] = ()) -> pd.DataFrame:
    """Flags per (setting, sparsity, k, series) and per (setting, sparsity, series) over all k (k NaN)."""
    sparse = runs[runs["branch"].isin(names.SPARSE_BRANCHES) & runs["k"].notna()]
    per_k = aggregate(sparse, keys + ["sparsity", "k", "branch", *tags], metric)
    over_k = aggregate(sparse, keys + ["sparsity", "branch", *tags], metric).assign(k=np.nan)
    return pd.concat([per_k, over_k], ignore_index=True)


def _same_tags(frame: pd.DataFrame, row, tags) -> pd.Series:
    """Rows of ``frame`` whose series tags equal ``row``'s (blank equals blank)."""
    ok = pd.Series(True, index=frame.index)
    for t in tags:
        v = getattr(row, t, None) if not isinstance(row, dict) else row.get(t)
        if series._blank(v):
            ok &= frame[t].map(series._blank)
        else:
            ok &= frame[t].map(lambda x, v=v: not series._blank(x) and (x == v or _num_eq(x, v)))
    return ok


def _num_eq(a, b) -> bool:
    try:
        return float(a) == float(b)
    except (TypeError, ValueError):
        return False


def _matching_words(row, tags) -> str:
    get = (lambda t: row.get(t)) if hasattr(row, "get") else (lambda t: getattr(row, t, None))
    return series.matching_label(get("method") if "method" in tags else None,
                                 get("match_epoch") if "match_epoch" in tags else None)


def _flagged_runs(runs: pd.DataFrame) -> list[dict]:
    """Every run flagged dead or diverged: where it sits, its status and reasons."""
    bad = runs[tidy.flagged(runs)]
    out = []
    for _, r in bad.iterrows():
        where = [names.setting(r.to_dict())]
        if "sparsity" in r and pd.notna(r["sparsity"]):
            where.append(f"S = {names.sparsity(r['sparsity'])}")
        if "k" in r and pd.notna(r["k"]):
            where.append(f"k = {float(r['k']):g}")
        where.append(names.branch(r["branch"]))
        if "seed" in r and pd.notna(r["seed"]):
            where.append(f"seed {float(r['seed']):g}")
        reasons = r.get(tidy.HEALTH_REASONS)
        out.append({**{k: r.get(k) for k in ("experiment", "dataset", "model")}, "where": " · ".join(w for w in where if w),
                    "status": tidy.health_of(r.to_frame().T).iloc[0],
                    "reasons": reasons if isinstance(reasons, str) else ""})
    return out


def _section_cells(card: dict | None, section: str) -> pd.DataFrame | None:
    """The scorecard's cells of one section (ours and the published ones not run), or None if it has none."""
    if not card or not card.get("cells"):
        return None
    cells = pd.DataFrame(card["cells"])
    if "section" not in cells.columns:
        return None
    cells = cells[cells["section"] == section]
    return cells if len(cells) else None


def _vs_paper(r: pd.Series, digits: int) -> str:
    """'ours · paper P · verdict' for one scorecard cell."""
    ours = scorecard_mod._pm(r["ours_mean"], r["ours_std"], r["ours_n"], digits) \
        if r["verdict"] != "not_run" else "not run"
    if r.get("flags"):
        ours += f" {tidy.FLAG_MARK}"
    if not scorecard_mod._finite(r.get("paper_mean")):
        return f"{ours} · no reference"
    return f"{ours} · paper {float(r['paper_mean']):.{digits}f} · {r['verdict'].replace('_', ' ')}"


def _study_sections(card: dict | None, setting: dict) -> list[str]:
    """Table 1 and Table 15: our cells beside the paper's, as the scorecard compared them."""
    out = []
    div = _section_cells(card, "diversity")
    if div is not None:
        div = _restrict(div, setting)
    if div is not None and len(div):
        out += ["### Ensembles (Table 1): ours · paper · verdict", ""]
        metrics = [m for m in scorecard_mod.DIVERSITY_METRICS if m in set(div["metric"])]
        labels = {"member_acc": "Member acc. (%)", "ensemble_acc": "Ensemble acc. (%)", "disagreement": "Disagreement",
                  "kl": "KL", "js": "JS"}
        for (w, s), part in div.groupby(["width", "sparsity"], sort=True, dropna=False):
            rows = []
            for g in [b for b in names.BRANCHES if b in set(part["branch"])] + \
                    sorted(set(part["branch"]) - set(names.BRANCHES)):
                cells = part[part["branch"] == g].set_index("metric")
                rows.append([names.branch(g)] + [_vs_paper(cells.loc[m], 4 if m in ("disagreement", "kl", "js") else 2)
                                                 if m in cells.index else tidy.NOT_RUN for m in metrics])
            out += [f"{names.width(w)}, S = {names.sparsity(s)}", "",
                    markdown_table(["Group"] + [labels[m] for m in metrics], rows), ""]
    early = _section_cells(card, "early_matching")
    if early is not None:
        early = _restrict(early, setting)
    if early is not None and len(early):
        out += ["### Early matching (Table 15): ours · paper · verdict", ""]
        for (w, k, metric), part in early.groupby(["width", "k", "metric"], sort=True, dropna=False):
            sparsities = sorted(part["sparsity"].dropna().unique())
            rows = []
            perm = part[part["branch"] == "permuted"]
            methods = series.order_methods(perm["method"]) if "method" in perm.columns else []
            for m in methods or [None]:  # several matching methods: each its own rows
                mine = perm if m is None else perm[perm["method"] == m]
                how = f" ({names.method(m)})" if m else ""
                for e in sorted(mine["match_epoch"].dropna().unique()):
                    rows.append([f"permuted, matched at epoch {float(e):g}{how}"] + _early_row(
                        mine[mine["match_epoch"] == e], sparsities))
            for b in ("lth", "naive"):
                if (part["branch"] == b).any():
                    rows.append([f"{names.branch(b)} (reference)"] + _early_row(part[part["branch"] == b], sparsities))
            out += [f"{names.width(w)}, k = {float(k):g}, {names.METRIC_LABELS.get(metric, metric)}", "",
                    markdown_table([""] + [f"S = {names.sparsity(x)}" for x in sparsities], rows), ""]
    return out


def _early_row(part: pd.DataFrame, sparsities) -> list[str]:
    out = []
    for x in sparsities:
        c = part[np.isclose(part["sparsity"].astype(float), x)]
        out.append(_vs_paper(c.iloc[0], 2) if len(c) else tidy.NOT_RUN)
    return out


def _comparison_sections(averaged: pd.DataFrame, per_k: pd.DataFrame, setting: dict, corr, bars, main_mode,
                         all_weights: dict | None = None, setting_keys: list[str] = (), tests: pd.DataFrame | None = None,
                         flags: pd.DataFrame | None = None, tags: list[str] = ()) -> list[str]:
    def sparsity(r) -> str:
        key = tuple(setting.get(k) for k in setting_keys) + ((getattr(r, "width", None),) if "width" in keys else ())
        return sparsity_cell(r.sparsity, (all_weights or {}).get(key + (r.sparsity,)))

    def where(r, k=None) -> str:
        parts = [names.width(getattr(r, "width")) if "width" in keys else "", f"S = {names.sparsity(r.sparsity)}",
                 f"k = {k:g}" if k is not None else "averaged over k"]
        return ", ".join(p for p in parts if p)

    def branch_cell(notes: Notes, r, b: str, k=None) -> str:
        text = _fmt_pct(getattr(r, b))
        if flags is None or flags.empty:
            return text
        sel = flags[(flags["branch"] == b) & np.isclose(flags["sparsity"], r.sparsity)]
        if tags and series.depends_on_matching(b):
            sel = sel[_same_tags(sel, r, tags)]
        sel = sel[np.isclose(sel["k"], k)] if k is not None else sel[sel["k"].isna()]
        if "width" in keys:
            sel = sel[sel["width"] == getattr(r, "width")]
        if sel.empty:
            return text
        what = series.label(b, *((getattr(r, "method", None) if "method" in tags else None,
                                  getattr(r, "match_epoch", None) if "match_epoch" in tags else None)
                                 if series.depends_on_matching(b) else ()))
        return text + notes.mark(f"{where(r, k)}, {what}", sel.iloc[0]["flags"])

    keys = [*setting_keys, "width"] if "width" in averaged.columns else list(setting_keys)
    if averaged.empty:
        return ["No naive/permuted runs in this setting.", ""]
    def matching(r) -> list[str]:  # the permuted series' matching, when there are several
        return [_matching_words(r, tags)] if tags else []

    def method_of(r) -> dict:
        return {"method": r.method} if "method" in tags and bars is not None and "method" in bars.columns else {}

    header = ["Width", "Sparsity", *(["Matching"] if tags else []), "LTH", "Naive", "Permuted",
              "Permuted − naive (pp)", "Gap closed"]
    ncols = len(header)
    if corr is not None:
        header.append("Matched corr.")
    if main_mode is not None:
        header.append(f"Loss barrier ({names.path_kind(True, main_mode)})")
    notes = Notes(rule=False)
    rows = []
    order = [k for k in ("width", "sparsity") if k in averaged.columns]
    for r in (_sort_tags(averaged, list(tags)) if tags else averaged.sort_values(order)).itertuples():
        width = getattr(r, "width", None)
        row = [names.width(width) if width is not None else "–", sparsity(r), *matching(r),
               *(branch_cell(notes, r, b) for b in ("lth", "naive", "permuted")),
               _fmt_diff(r.diff_mean, r.diff_std, r.diff_n), _fmt_gap(r.gap_closed)]
        if corr is not None:
            c = _lookup(corr, setting, width, {t: getattr(r, t) for t in _corr_tags(corr) if t in tags})
            row.append(fmt_mean_std(c["mean"], c["std"], c["n"], 3) if c is not None else "–")
        if main_mode is not None:
            b = _lookup(bars, setting, width, {"permuted": True, "mode": main_mode, **method_of(r)})
            row.append(fmt_mean_std(b["mean"], b["std"], b["n"], 3) + notes.mark(
                f"{names.width(width)}, loss barrier", b["flags"]) if b is not None else notes.missing())
        rows.append(row)
    out = ["### Averaged over k", "", markdown_table(header, rows), ""]
    if notes.render():
        out += [notes.render(), ""]
    notes = Notes(rule=False)
    rows = []
    order = [c for c in ("width", "sparsity", "k") if c in per_k.columns]
    for r in (_sort_tags(per_k, list(tags)) if tags else per_k.sort_values(order)).itertuples():
        test = None
        if tests is not None and not tests.empty:
            sel = tests[np.isclose(tests["sparsity"], r.sparsity) & np.isclose(tests["k"], r.k)]
            if "width" in keys:
                sel = sel[sel["width"] == getattr(r, "width")]
            if tags:
                sel = sel[_same_tags(sel, r, tags)]
            test = sel.iloc[0] if len(sel) else None
        p = "" if test is None or not scorecard_mod._finite(test["p"]) else f"{test['p']:.3g}"
        rows.append([names.width(getattr(r, "width", None)) if "width" in per_k.columns else "–", sparsity(r),
                     f"{r.k:g}", *matching(r), *(branch_cell(notes, r, b, r.k) for b in ("lth", "naive", "permuted")),
                     _fmt_diff(r.diff_mean, r.diff_std, r.diff_n), _fmt_gap(r.gap_closed), p,
                     test["result"] if test is not None else "not tested"])
    out += ["### Per rewind point k", "",
            markdown_table(header[:2] + ["k"] + header[2:ncols] + ["p (one-sided)", "Permuted > naive"], rows), ""]
    if notes.render():
        out += [notes.render(), ""]
    return out


def _path_words(permuted: bool, mode_name: str, method=None) -> str:
    return names.path_kind(permuted, mode_name) + (f" · {names.method(method)}" if method else "")


def _per_width_section(setting: dict, widths: list, dense_acc, corr, bars) -> list[str]:
    """Dense accuracy, matched correlation and every loss barrier (naive/permuted × mode) per width."""
    header = ["Width"]
    combos: list[tuple] = []
    ctags = _corr_tags(corr)
    corr_series = [{}]  # one column per matching series of the correlation (method, epoch of B) when several
    if ctags:
        corr_series = [dict(zip(ctags, key if isinstance(key, tuple) else (key,))) for key, _ in
                       _sort_tags(corr.assign(sparsity=0.0), ctags).groupby(ctags, sort=False, dropna=False)]
    if dense_acc is not None:
        header.append("Dense acc. (%)")
    if corr is not None:
        header += [f"Matched corr. ({series.matching_label(**c)})" if c else "Matched corr." for c in corr_series]
    if bars is not None:
        sel = _restrict(bars, setting)
        methods = sel["method"] if "method" in sel.columns else [None] * len(sel)
        combos = sorted({(bool(p), str(m), None if series._blank(me) else str(me))
                         for p, m, me in zip(sel["permuted"], sel["mode"], methods)},
                        key=lambda c: (c[0], names.MODES.index(c[1]) if c[1] in names.MODES else len(names.MODES),
                                       series.method_rank(c[2])))
        header += [f"Loss barrier ({_path_words(p, m, me)})" for p, m, me in combos]
    rows = []
    notes = Notes(rule=False)
    for w in widths:
        row = [names.width(w)]
        cells = [(dense_acc, 2, "dense accuracy", {})] + [(corr, 3, "matched correlation", c) for c in corr_series]
        for frame, digits, what, extra in cells:
            if frame is not None:
                c = _lookup(frame, setting, w, extra)
                what = f"{what} ({series.matching_label(**extra)})" if extra else what
                row.append(notes.cell(c["mean"], c["std"], c["n"], c["flags"], f"{names.width(w)}, {what}", digits)
                           if c is not None else notes.missing())
        for p, m, me in combos:
            b = _lookup(bars, setting, w, {"permuted": p, "mode": m, **({"method": me} if me else {})})
            row.append(notes.cell(b["mean"], b["std"], b["n"], b["flags"],
                                  f"{names.width(w)}, loss barrier ({_path_words(p, m, me)})", 3)
                       if b is not None else notes.missing())
        rows.append(row)
    note = "Mean ± std over seeds; barriers on the test split when available."
    if combos:
        note += (" The paper gives linear mode connectivity only as a figure (Fig. 3), so no published barrier "
                 "sits beside these.")
    out = ["### Per width", "", markdown_table(header, rows), "", note, ""]
    return out + ([notes.render(), ""] if notes.render() else [])
