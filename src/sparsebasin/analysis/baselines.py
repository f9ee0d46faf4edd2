"""The baselines: every sparse branch and matching method side by side, against naive, and which explanation
of the transfer the tests support.

Three places read this module: the ``baselines`` table (``tables``), the
``baselines`` figure's panel notes (``plots``) and summary.md's section on
the controls (``summary``). Every test is the scorecard's one-sided paired
t-test over seeds (``scorecard.paired_test``), on accuracies in percent,
paired by seed: the runs of one seed share B's init and the mask m_A.

Series (``series``): a permuted run's series is (branch, method, epoch of B
matched); each is compared on its own, never averaged with another.

The explanations and the rule that decides between them (``RULE``, which
summary.md prints), per cell (dataset, model, width, sparsity, k) and per
permuted series:

- alignment: permuted > naive and permuted > A's signs are both significant;
- the signs: A's signs > naive is significant and permuted > A's signs is not;
- neither: neither permuted > naive nor A's signs > naive is significant;
- undecided: any other outcome;
- not tested: one of the three tests has too few seeds (or a branch is
  missing in that cell): the cell is not counted.

The verdict names an explanation only when every counted cell supports it;
otherwise it says the cells are mixed, with the counts. The random-mask
control is tested beside it (naive > random: the mask m_A carries more than
its per-layer density) and does not enter the verdict.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import UserError
from . import names, scorecard, series, tidy
from .tables import (FLAG_COLUMNS, Notes, _k_label, aggregate, fmt_mean_std, heading, markdown_table, present,
                     settings, sparsity_cell, weight_sparsity_by_cell)

BASE = "naive"  # every series is compared with naive: B's rewind weights under the unaligned m_A
CELL = scorecard._CELL  # dataset, model, width, sparsity, k: the claims' cell
SETTING_KEYS = ("experiment", "dataset", "model", "width")


@dataclass(frozen=True)
class Comparison:
    """One tested difference: ``a`` − ``b`` > 0, one-sided, paired by seed."""

    a: str
    b: str
    means: str  # what a significant result says, in words

    @property
    def name(self) -> str:
        return f"{self.a} > {self.b}"

    def text(self, permuted: str | None = None) -> str:
        """'Permuted > Naive', with the permuted series' matching when there are several."""
        def one(b):
            return series.label_of(permuted) if b == "permuted" and permuted else names.branch(b)

        return f"{one(self.a)} > {one(self.b)}"


# The comparisons summary.md reports when an experiment runs control branches (the first three decide RULE).
COMPARISONS = (
    Comparison("permuted", "naive", "the aligned mask beats m_A unaligned on B's weights"),
    Comparison("signs", "naive", "A's signs on B's magnitudes beat B's own weights under m_A"),
    Comparison("permuted", "signs", "alignment beats A's signs"),
    Comparison("naive", "random", "m_A carries more than its per-layer density"),
)
DECIDING = ("permuted > naive", "signs > naive", "permuted > signs")
SUPPORTS = ("alignment", "signs", "neither", "undecided", "not tested")
SUPPORT_WORDS = {
    "alignment": "alignment (permuted beats both naive and A's signs)",
    "signs": "the signs (A's signs beat naive; permuted does not beat A's signs)",
    "neither": "neither (neither permuted nor A's signs beats naive)",
    "undecided": "undecided (the tests do not separate the explanations)",
    "not tested": "not tested (too few seeds, or a branch missing)",
}
RULE = (
    "Per cell (dataset, model, width, sparsity, k) and permuted series, three one-sided paired t-tests over "
    f"seeds (α = {scorecard.CLAIM_ALPHA:g}, the scorecard's test): permuted > naive, A's signs > naive and "
    "permuted > A's signs. A cell supports *alignment* when permuted > naive and permuted > A's signs are both "
    "significant; *the signs* when A's signs > naive is significant and permuted > A's signs is not; *neither* "
    "when neither permuted > naive nor A's signs > naive is significant; otherwise it is *undecided*. A cell "
    f"where a test has fewer than {scorecard.MIN_PAIRS} seed pairs is not counted. The verdict names an "
    "explanation only when every counted cell supports it. Naive > random (the mask m_A carries more than its "
    "per-layer density) is tested beside and does not enter the verdict. Each cell is tested on its own "
    "(no correction for the number of cells)."
)


def controls(runs: pd.DataFrame) -> list[str]:
    """The control branches (sparse, not the paper's) that ran in ``runs``, in the branch table's order."""
    from ..branches import TABLE

    have = set(runs["branch"]) if "branch" in runs.columns else set()
    return [b.name for b in TABLE if b.sparse and not b.paper and b.name in have]


def _sparse(runs: pd.DataFrame, metric: str, what: str) -> pd.DataFrame:
    runs = tidy.prepare(runs, ["branch", "sparsity", "k", metric], what)
    sparse = runs[runs["branch"].isin(names.SPARSE_BRANCHES) & runs["k"].notna() & runs["sparsity"].notna()]
    if sparse.empty:
        raise UserError(f"{tidy.source_of(runs)}: {what} needs sparse runs ({', '.join(names.SPARSE_BRANCHES)}) "
                        "with a sparsity and a rewind point k; collect the sparse runs")
    return series.assign(sparse.assign(**{c: sparse[c] if c in sparse.columns else np.nan for c in CELL}))


def _cell_key(row) -> tuple:
    return scorecard._key(row, CELL)


def tests(by_seed: pd.DataFrame, a: str, b: str) -> pd.DataFrame:
    """Per cell: series ``a`` − series ``b`` (pp, paired by seed) and the one-sided test of ``a`` > ``b``
    (``scorecard.paired_test``); ``by_seed``: ``scorecard._by_seed(runs, metric, column="series")``."""
    rows = [key | scorecard.paired_test(d) for key, d in scorecard._pair_cells(by_seed, a, b)]
    return pd.DataFrame(rows, columns=[*CELL, "n", "nonfinite", "mean", "std", "t", "p", "result"])


def versus_base(runs: pd.DataFrame, metric: str = "test_acc", base: str = BASE) -> pd.DataFrame:
    """Every series against ``base`` (naive), per cell: ``series`` plus the columns of ``tests``."""
    by_seed = scorecard._by_seed(runs, metric, column="series")
    frames = [tests(by_seed, s, base).assign(series=s) for s in series.order(runs["series"]) if s != base]
    frames = [f for f in frames if len(f)]
    cols = [*CELL, "series", "n", "nonfinite", "mean", "std", "t", "p", "result"]
    return pd.concat(frames, ignore_index=True)[cols] if frames else pd.DataFrame(columns=cols)


def match_seconds(matches: pd.DataFrame | None, runs: pd.DataFrame) -> dict:
    """(setting..., series id) -> (mean, std, n) seconds ``match`` took to find the permutation, over the
    matchings (seeds) of the series' method and epoch of B; only series that depend on the matching."""
    if matches is None:
        return {}
    m = tidy.prepare(matches, ["seconds"], "the matching times")
    epoch = pd.to_numeric(m["match_epoch"], errors="coerce") if "match_epoch" in m.columns else \
        pd.Series(np.nan, index=m.index)
    if "epoch_b" in m.columns:  # the summary's own field: B's epoch (the early variant also tags it)
        epoch = epoch.fillna(pd.to_numeric(m["epoch_b"], errors="coerce"))
    m = m.assign(_epoch=epoch, _method=m["method"] if "method" in m.columns else None,
                 _s=pd.to_numeric(m["seconds"], errors="coerce"))
    setting = [c for c in ("dataset", "model", "width") if c in runs.columns and c in m.columns]
    out = {}
    dep = runs[series.dependent(runs)]
    for key, part in dep.groupby([*setting, "series"], dropna=False, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        sel = m
        for c, v in zip(setting, key):
            sel = sel[sel[c] == v] if not _isnan(v) else sel
        s = series.parts(key[-1])
        if s["method"] is not None:
            sel = sel[sel["_method"].astype(str) == s["method"]]
        epochs = pd.to_numeric(part["match_epoch"], errors="coerce").dropna().unique() \
            if "match_epoch" in part.columns else []
        if len(epochs) and sel["_epoch"].notna().any():
            sel = sel[sel["_epoch"].isin(epochs)]
        v = sel["_s"][np.isfinite(sel["_s"].to_numpy(dtype=float))]
        if len(v):
            out[tuple(_norm(x) for x in key)] = (float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else math.nan,
                                                 len(v))
    return out


def baselines_table(runs: pd.DataFrame, matches: pd.DataFrame | None = None,
                    metric: str = "test_acc") -> tuple[pd.DataFrame, str]:
    """Per (setting, sparsity, k) and series: accuracy mean ± std over seeds, the paired difference from naive
    with its one-sided test, and (with ``matches``) the time to find the permutation beside permuted's."""
    if metric not in ("test_acc", "test_top5"):
        raise UserError(f"--metric {metric!r} is not an accuracy; choose from test_acc, test_top5")
    tagged = _sparse(runs, metric, "the baselines table")
    keys = present(tagged, SETTING_KEYS) + ["sparsity", "k", "series"]
    frame = aggregate(tagged, keys, metric, scale=100.0).rename(columns={"mean": "mean_pct", "std": "std_pct"})
    info = pd.DataFrame([series.parts(s) for s in frame["series"]], index=frame.index)
    frame.insert(keys.index("series") + 1, "branch", info["branch"])
    frame.insert(keys.index("series") + 2, "method", info["method"])
    frame.insert(keys.index("series") + 3, "match_epoch", info["match_epoch"].astype(float))
    frame.insert(keys.index("series") + 4, "label", [series.label_of(s) for s in frame["series"]])
    vs = {(_cell_key(r), r["series"]): r for _, r in versus_base(tagged, metric).iterrows()}
    cells = [vs.get((_cell_key(r), r["series"])) for _, r in frame.iterrows()]
    for col, src in (("vs_naive_mean_pp", "mean"), ("vs_naive_std_pp", "std"), ("vs_naive_n", "n"),
                     ("vs_naive_p", "p")):
        frame[col] = [np.nan if c is None else c[src] for c in cells]
    frame["vs_naive_result"] = [("reference" if r["series"] == BASE else "not tested") if c is None else c["result"]
                                for c, (_, r) in zip(cells, frame.iterrows())]
    seconds = match_seconds(matches, tagged)
    setting = [c for c in ("dataset", "model", "width") if c in tagged.columns]
    if matches is not None:
        got = [seconds.get(tuple(_norm(r[c]) for c in setting) + (r["series"],)) for _, r in frame.iterrows()]
        frame["match_seconds_mean"] = [np.nan if g is None else g[0] for g in got]
        frame["match_seconds_std"] = [np.nan if g is None else g[1] for g in got]
        frame["match_seconds_n"] = [0 if g is None else g[2] for g in got]
    rank = {s: i for i, s in enumerate(series.order(frame["series"]))}
    frame = (frame.assign(_r=frame["series"].map(rank)).sort_values([*keys[:-1], "_r"], na_position="first")
             .drop(columns="_r").reset_index(drop=True))
    frame = frame[[c for c in frame.columns if c not in FLAG_COLUMNS] + list(FLAG_COLUMNS)]
    return frame, _markdown(frame, tagged, metric, matches is not None)


def _markdown(frame: pd.DataFrame, tagged: pd.DataFrame, metric: str, timed: bool) -> str:
    setting_keys = present(frame, SETTING_KEYS)
    all_weights = weight_sparsity_by_cell(tagged, setting_keys)
    parts = []
    for setting, part in settings(frame):
        notes = Notes()
        header = ["Sparsity", "k", "Branch", names.METRIC_LABELS[metric].replace("Test accuracy", "Acc."),
                  f"− {names.branch(BASE)} (pp)", "p (one-sided)", f"> {names.branch(BASE)}"]
        if timed:
            header.append("π found in (s)")
        rows = []
        for r in part.itertuples():
            where = f"S = {names.sparsity(r.sparsity)}, k = {_k_label(r.k)}, {r.label}"
            key = tuple(setting.get(k) for k in setting_keys) + (r.sparsity,)
            row = [sparsity_cell(r.sparsity, all_weights.get(key)), _k_label(r.k), r.label,
                   notes.cell(r.mean_pct, r.std_pct, r.n, r.flags, where)]
            if r.series == BASE:
                row += ["", "", "reference"]
            else:
                row += [_diff(r.vs_naive_mean_pp, r.vs_naive_std_pp, r.vs_naive_n),
                        "" if not np.isfinite(r.vs_naive_p) else f"{r.vs_naive_p:.3g}", r.vs_naive_result]
            if timed:
                row.append(fmt_mean_std(r.match_seconds_mean, r.match_seconds_std, r.match_seconds_n, 3)
                           if r.match_seconds_n else "")
            rows.append(row)
        title = f"{names.METRIC_LABELS[metric]} per branch and matching method"
        parts.append(notes.append_to(f"{heading(setting, title)}\n\n{markdown_table(header, rows)}"))
    note = (f"Mean ± std over seeds. − {names.branch(BASE)}: each series minus {names.branch(BASE)}, paired by seed "
            f"(percentage points, mean ± std over the seeds that ran both); > {names.branch(BASE)}: "
            f"{scorecard.CLAIM_TEST} (α = {scorecard.CLAIM_ALPHA:g}; fewer than {scorecard.MIN_PAIRS} seeds: too "
            "few seeds), the scorecard's test. A run that depends on the matching (permuted) is one series per "
            "matching method and epoch of B; no two series are averaged together.")
    if timed:
        note += (" π found in: the time `match` took to find the permutation (mean ± std over the matchings of "
                 "that method and epoch, one per seed).")
    return "\n\n".join(parts) + "\n\n" + note


def _diff(mean, std, n) -> str:
    if mean is None or not np.isfinite(mean):
        return ""
    n = 0 if n is None or not np.isfinite(n) else int(n)
    if n < 2 or std is None or not np.isfinite(std):
        return f"{mean:+.2f} (n={n})"
    return f"{mean:+.2f} ± {std:.2f}"


# ---------------------------------------------------------------- which explanation (summary.md)


def supports(results: dict) -> str:
    """The explanation one cell supports, from its tests' results (``RULE``)."""
    got = [results.get(name) for name in DECIDING]
    if any(r is None or r == "too few seeds" for r in got):
        return "not tested"
    p_naive, s_naive, p_signs = (r == "significant" for r in got)
    if p_naive and p_signs:
        return "alignment"
    if s_naive and not p_signs:
        return "signs"
    if not p_naive and not s_naive:
        return "neither"
    return "undecided"


def explain(runs: pd.DataFrame, metric: str = "test_acc") -> pd.DataFrame:
    """Per cell and permuted series: each comparison's mean, p and result, and the explanation it supports.

    Columns: the cell (``CELL``), ``permuted`` (the series id, empty without permuted runs), then per
    comparison ``<name>`` (its result), ``<name>:mean``, ``<name>:p``, and ``supports``.
    """
    tagged = _sparse(runs, metric, "the controls' comparison")
    by_seed = scorecard._by_seed(tagged, metric, column="series")
    permuted = [s for s in series.order(by_seed.columns) if series.depends_on_matching(series.parts(s)["branch"])]
    rows: dict = {}
    for p in permuted or [None]:
        for comp in COMPARISONS:
            a, b = (p if x == "permuted" else x for x in (comp.a, comp.b))
            if a is None or b is None:
                continue
            for key, d in scorecard._pair_cells(by_seed, a, b):
                r = scorecard.paired_test(d)
                row = rows.setdefault((_cell_key(key), p), key | {"permuted": p or ""})
                row |= {comp.name: r["result"], f"{comp.name}:mean": r["mean"], f"{comp.name}:p": r["p"]}
    out = pd.DataFrame(list(rows.values()))
    if out.empty:
        return out
    out["supports"] = [supports(r) for r in out.to_dict("records")]
    return out.sort_values([*CELL, "permuted"], na_position="first").reset_index(drop=True)


def verdict(cells: pd.DataFrame) -> str:
    """One sentence from the cells' ``supports`` (``RULE``): an explanation only when every counted cell
    supports it; the counts otherwise."""
    counted = cells[cells["supports"] != "not tested"]
    skipped = len(cells) - len(counted)
    tail = f" ({skipped} {'cell' if skipped == 1 else 'cells'} with too few seeds or a branch missing, not counted)" \
        if skipped else ""
    n = len(counted)
    if not n:
        return f"No cell could be tested{tail}: no verdict."
    found = counted["supports"].value_counts()
    if len(found) == 1:
        what = found.index[0]
        sentence = {
            "alignment": f"permuted beats both naive and A's signs significantly in all {n} tested cells: "
                         "alignment, not the signs, carries the transfer",
            "signs": f"A's signs beat naive significantly and permuted does not beat A's signs in all {n} tested "
                     "cells: the signs carry the transfer as well as alignment does",
            "neither": f"neither permuted nor A's signs beats naive significantly in any of the {n} tested cells: "
                       "the numbers support neither explanation",
            "undecided": f"in all {n} tested cells the tests do not separate alignment from the signs",
        }[what]
        return sentence[0].upper() + sentence[1:] + tail + "."
    counts = ", ".join(f"{what} in {int(found[what])}" for what in SUPPORTS if what in found.index)
    return f"The cells are mixed ({counts} of {n} tested cells): no single explanation holds in every cell{tail}."


def _result_cell(row: dict, name: str) -> str:
    result = row.get(name)
    if not isinstance(result, str):
        return tidy.NOT_RUN
    mean, p = row.get(f"{name}:mean"), row.get(f"{name}:p")
    text = "" if mean is None or not np.isfinite(mean) else f"{mean:+.2f}"
    if p is not None and np.isfinite(p):
        text += f" (p = {p:.3g})"
    return f"{text} {result}".strip()


def summary_section(runs: pd.DataFrame, metric: str = "test_acc") -> list[str]:
    """summary.md's section on the control branches: what was compared, the counts, the verdict per permuted
    series and every cell ([] when the experiment runs no control branch)."""
    present_controls = controls(runs)
    if not present_controls:
        return []
    cells = explain(runs, metric)
    have = [b for b in ("permuted", "signs", "random", "naive") if b in set(runs["branch"])]
    title = {"permuted": "alignment (permuted)", "signs": "A's signs", "random": "random mask", "naive": "naive"}
    out = ["## Which explanation the numbers support", "",
           _first_upper(" vs ".join(title[b] for b in have)) + ".", "", RULE, ""]
    if cells.empty:
        return out + ["No cell has two of these branches with a seed in common: nothing to compare.", ""]
    comps = [c for c in COMPARISONS if c.name in cells.columns]
    body = []
    first = cells["permuted"].iloc[0]
    for p, part in cells.groupby("permuted", sort=False):
        for c in comps:
            res = part[c.name].dropna()
            if "permuted" not in (c.a, c.b) and p != first:
                continue  # does not depend on the matching: once
            mean = part[f"{c.name}:mean"]
            body.append([c.text(p or None), c.means, str(int((res == "significant").sum())),
                         str(int((res == "not significant").sum())), str(int((res == "too few seeds").sum())),
                         f"{int((mean > 0).sum())} of {int(mean.notna().sum())}"])
    out += [markdown_table(["comparison", "a significant result says", "significant", "not significant",
                            "too few seeds", "mean difference > 0"], body), ""]
    signs = "signs > naive" in cells.columns and "permuted > signs" in cells.columns
    for p, part in cells.groupby("permuted", sort=False):
        lead = f"**{series.label_of(p)}:** " if p and cells["permuted"].nunique() > 1 else "**Verdict:** "
        if signs:
            out += [lead + verdict(part), ""]
        else:
            out += [lead + "without A's-signs runs beside permuted and naive, alignment and the signs cannot be "
                    "told apart here: no verdict.", ""]
    if "naive > random" in cells.columns:
        res = cells.drop_duplicates([*CELL])["naive > random"].dropna()
        tested = res[res != "too few seeds"]
        sig = int((tested == "significant").sum())
        out += [f"Random mask: naive beats a random mask of the same per-layer density significantly in {sig} of "
                f"{len(tested)} tested cells" + (" (the mask m_A carries more than its density there)" if sig else "")
                + (f"; {len(res) - len(tested)} with too few seeds" if len(res) > len(tested) else "") + ".", ""]
    many = cells["permuted"].nunique() > 1
    header = ["Setting", "Sparsity", "k"] + (["Permuted series"] if many else []) + \
        [c.text() for c in comps] + ["Supports"]
    rows = []
    for r in cells.to_dict("records"):
        where = names.setting({k: r.get(k) for k in ("dataset", "model", "width") if not _isnan(r.get(k))})
        rows.append([where, names.sparsity(r["sparsity"]), _k_label(r["k"])]
                    + ([series.matching_label(**{k: v for k, v in series.parts(r["permuted"]).items()
                                                 if k != "branch"}) or "–"] if many else [])
                    + [_result_cell(r, c.name) for c in comps] + [r["supports"]])
    out += ["### Per cell", "", markdown_table(header, rows), "",
            "Each entry: mean paired difference (pp) over seeds, its one-sided p, and the result; "
            "Supports: the explanation the cell supports by the rule above (" +
            "; ".join(SUPPORT_WORDS[s] for s in SUPPORTS) + ").", ""]
    return out


def _first_upper(text: str) -> str:
    return text[:1].upper() + text[1:]


def _isnan(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _norm(v):
    if _isnan(v):
        return None
    return round(float(v), 6) if isinstance(v, (int, float, np.number)) else str(v)
