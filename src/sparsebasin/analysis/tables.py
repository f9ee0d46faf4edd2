"""Paper tables from tidy tables: a tidy CSV frame plus a Markdown rendering.

Each builder returns ``(frame, markdown)``. Cells are mean, sample std
(ddof=1) and n over seeds (or over ensembles); Markdown shows ``mean ± std``
(``mean (n=1)`` when a cell has a single value). Accuracies are reported in
percent (CSV columns ``*_pct``); barriers, KL and JS keep their own units.

- ``accuracy``  (Tables 5-14): runs table -> ``[experiment, dataset, model,
  width, sparsity, k, branch, metric, mean_pct, std_pct, n, sparsity_all_weights]``,
  one block of rows per metric (Table 10: top-1 and top-5).
- ``diversity`` (Table 1): ensembles table -> ``[experiment, dataset, model,
  width, sparsity, k, group, n,
  acc_mean_pct, acc_std_pct, ensemble_acc_pct, disagreement, kl, js]``.
- ``early_matching`` (Table 15): runs table with ``match_epoch`` ->
  ``[dataset, model, width, sparsity, k, branch, match_epoch, mean_pct, std_pct, n]``.
- ``lmc``: barriers (or curves) table -> ``[dataset, model, width, split, mode,
  permuted, loss_barrier_mean, loss_barrier_std, error_barrier_mean_pct,
  error_barrier_std_pct, n]`` (``method`` after ``permuted`` when the barriers carry several).
- ``baselines``: runs table (and the matches table) -> per ``[dataset, model,
  width, sparsity, k, series]``: accuracy, the paired difference from naive
  with its one-sided test, the time to find the permutation
  (``sparsebasin.analysis.baselines``).

Runs that depend on the matching (permuted) are one series per matching
method and epoch of B (``series``): with several, the accuracy table has a
``method`` / ``match_epoch`` column and one Markdown column per series.
(Key columns appear only when present in the input.)
"""

from __future__ import annotations

import math
from typing import Callable, Iterable

import numpy as np
import pandas as pd

from ..errors import UserError
from . import barriers, names, series, tidy

SETTING_KEYS = ("experiment", "dataset", "model", "width")
ACCURACY_METRICS = ("test_acc", "test_top5")


# ---------------------------------------------------------------- helpers


def present(df: pd.DataFrame, columns: Iterable[str]) -> list[str]:
    return [c for c in columns if c in df.columns]


FLAG_COLUMNS = ("n_flagged", "n_nonfinite", "flags")  # what aggregate adds after the count (tidy.FLAG_RULE)


def aggregate(df: pd.DataFrame, by: list[str], value: str, scale: float = 1.0, prefix: str = "") -> pd.DataFrame:
    """Mean, sample std (ddof=1) and count of ``value`` per ``by`` group; NaN keys kept.

    Follows ``tidy.FLAG_RULE``: non-finite values (NaN/inf) stay out of the
    mean, std and ``n`` and are counted in ``n_nonfinite``; rows of flagged runs
    (``health`` not ok) are averaged in and counted in ``n_flagged``; ``flags``
    says both in words ("1 of 3 runs dead (chance accuracy)"), empty if neither.
    """
    df = df[tidy.measured(df, value)]  # a healthy run's empty cell: a metric it does not report
    values = pd.to_numeric(df[value], errors="coerce").astype(float) * scale
    bad = pd.Series(tidy.nonfinite(values), index=df.index)
    values = values.where(~bad)
    health = tidy.health_of(df)
    keys = [df[c] for c in by] if by else [pd.Series(np.zeros(len(df)), index=df.index)]
    grouped = values.groupby(keys, dropna=False, sort=True)
    out = pd.DataFrame({
        f"{prefix}mean": grouped.mean(),
        f"{prefix}std": grouped.std(ddof=1),
        "n": grouped.count(),
        "n_flagged": (health != tidy.OK).groupby(keys, dropna=False, sort=True).sum().astype(int),
        "n_nonfinite": bad.groupby(keys, dropna=False, sort=True).sum().astype(int),
    })
    why = df[tidy.NONFINITE] if tidy.NONFINITE in df.columns else pd.Series(None, index=df.index, dtype=object)
    out["flags"] = [_flags(part_health, part_bad, why.loc[part_bad.index])
                    for (_, part_health), (_, part_bad) in zip(health.groupby(keys, dropna=False, sort=True),
                                                                bad.groupby(keys, dropna=False, sort=True))]
    out = out.reset_index() if by else out.reset_index(drop=True)
    return out


def _flags(health: pd.Series, bad: pd.Series, why: pd.Series) -> str:
    total = len(health)
    parts = []
    statuses = [s for s in dict.fromkeys(health) if s != tidy.OK]
    if statuses:
        parts.append(tidy.flag_text({s: int((health == s).sum()) for s in statuses}, total, "runs"))
    if bad.any():
        text = (f"{int(bad.sum())} of {total} value{'s' if total != 1 else ''} "
                f"{tidy.label(tidy.NONFINITE_STATUS)}, left out of the mean")
        reasons = [r for r in dict.fromkeys(why[bad.to_numpy()]) if isinstance(r, str) and r.strip()]
        if reasons:  # the writer's own words, e.g. "loss_barrier: loss is non-finite at α = 0.5"
            text += f" ({reasons[0]}{'; …' if len(reasons) > 1 else ''})"
        parts.append(text)
    return "; ".join(parts)


def fmt_mean_std(mean: float, std: float, n: int | float, digits: int = 2) -> str:
    """``mean ± std``, ``mean (n=1)``; a cell that exists but has no finite value reads ``diverged``
    (``tidy.DIVERGED``), never the not-run mark."""
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return tidy.DIVERGED
    count = 0 if n is None or _isnan(float(n)) else int(n)
    if count < 2 or std is None or math.isnan(std):
        return f"{mean:.{digits}f} (n={count})"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


class Notes:
    """Footnotes of one Markdown table: a flagged cell gets ``†1``, ``†2``, ... and one line each below."""

    def __init__(self, rule: bool = True) -> None:
        self.lines: list[str] = []
        self.not_run = False
        self.rule = rule  # end with tidy.FLAG_RULE (off where the document states it once)

    def mark(self, where: str, flags) -> str:
        if not isinstance(flags, str) or not flags:
            return ""
        self.lines.append(f"{tidy.FLAG_MARK}{len(self.lines) + 1} {where}: {flags}.".replace(": .", "."))
        return f" {tidy.FLAG_MARK}{len(self.lines)}"

    def cell(self, mean, std, n, flags, where: str, digits: int = 2) -> str:
        """``mean ± std`` (or ``diverged``) with the flag mark of its footnote, if ``flags`` says anything."""
        return fmt_mean_std(mean, std, n, digits) + self.mark(where, flags)

    def missing(self) -> str:
        self.not_run = True
        return tidy.NOT_RUN

    def render(self) -> str:
        """The footnotes and, if any cell is flagged or missing, the rule (empty string if neither)."""
        out = list(self.lines)
        if self.rule and (self.lines or self.not_run):
            out.append(tidy.FLAG_RULE)
        return "\n\n".join(out)

    def append_to(self, text: str) -> str:
        notes = self.render()
        return f"{text}\n\n{notes}" if notes else text


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def branch_order(values: Iterable[str]) -> list[str]:
    vals = list(dict.fromkeys(str(v) for v in values))
    known = [b for b in names.BRANCHES if b in vals]
    return known + sorted(v for v in vals if v not in known)


def settings(df: pd.DataFrame, keys: Iterable[str] = SETTING_KEYS) -> list[tuple[dict, pd.DataFrame]]:
    """Split ``df`` by the setting columns present (experiment, dataset, model, width)."""
    keys = present(df, keys)
    if not keys:
        return [({}, df)]
    out = []
    for key, part in df.groupby(keys, dropna=False, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        out.append(({k: (None if _isnan(v) else v) for k, v in zip(keys, key)}, part))
    return out


def heading(setting: dict, what: str) -> str:
    label = names.setting(setting)
    if setting.get("experiment") is not None:
        label = f"{setting['experiment']}: {label}" if label else str(setting["experiment"])
    return f"### {label} — {what}" if label else f"### {what}"


def _isnan(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _k_label(k) -> str:
    return "–" if _isnan(k) else str(int(k)) if float(k).is_integer() else f"{k:g}"


# ---------------------------------------------------------------- accuracy (Tables 5-14)


ALL_WEIGHTS_NOTE = ("Sparsity is over the prunable weights; in brackets over all conv and linear weights "
                    "(shortcut convs, never pruned, included).")


def weight_sparsity_by_cell(runs: pd.DataFrame, keys: list[str]) -> dict:
    """(setting keys..., sparsity) -> mean sparsity over all conv/linear weights, from the runs that record it."""
    if "sparsity_all_weights" not in runs.columns:
        return {}
    known = runs[runs["sparsity_all_weights"].notna() & runs["sparsity"].notna()]
    if known.empty:
        return {}
    means = known.groupby(keys + ["sparsity"], dropna=False)["sparsity_all_weights"].mean()
    return {k if isinstance(k, tuple) else (k,): float(v) for k, v in means.items()}


def sparsity_cell(s, all_weights: float | None) -> str:
    label = names.sparsity(s)
    return f"{label} ({names.percent(all_weights)}%)" if all_weights is not None else label


def accuracy_table(runs: pd.DataFrame, metric: str = "test_acc", metrics=None) -> tuple[pd.DataFrame, str]:
    """Test accuracy per dataset/model/width/sparsity/k/branch (dense and IMP included), for each metric
    (Table 10 has top-1 and top-5); the sparsity over all weights beside the sparsity over prunable ones."""
    metrics = list(dict.fromkeys(metrics or [metric]))
    bad = [m for m in metrics if m not in ACCURACY_METRICS]
    if bad:
        raise UserError(f"--metric {bad[0]!r} is not an accuracy; choose from {', '.join(ACCURACY_METRICS)}")
    runs = series.blank_independent(tidy.prepare(runs, ["branch", *metrics], "the accuracy table"))
    runs = runs.assign(**{c: runs[c] if c in runs.columns else np.nan for c in ("sparsity", "k")})
    setting_keys = present(runs, SETTING_KEYS)
    tags = series.keys(runs)  # several matching methods or epochs of B: one column each, never averaged
    keys = setting_keys + ["sparsity", "k", "branch"] + tags
    all_weights = weight_sparsity_by_cell(runs, setting_keys)
    frames, parts = [], []
    for m in metrics:
        frame = aggregate(runs, keys, m, scale=100.0, prefix="")
        frame = frame.rename(columns={"mean": "mean_pct", "std": "std_pct"})
        frame.insert(len(keys), "metric", m)
        frame["sparsity_all_weights"] = [all_weights.get(tuple(r[k] for k in setting_keys) + (r["sparsity"],))
                                         for _, r in frame.iterrows()]
        frame = frame[[c for c in frame.columns if c not in FLAG_COLUMNS] + list(FLAG_COLUMNS)]
        frames.append(_sort_series(frame, setting_keys + ["sparsity", "k"], tags))
    frame = pd.concat(frames, ignore_index=True)

    for setting, part in settings(frame):
        for m in metrics:
            mpart = part[part["metric"] == m]
            notes = Notes()
            lines = [heading(setting, names.METRIC_LABELS[m]), ""]
            dense = mpart[mpart["branch"] == "dense"]
            if not dense.empty:
                d = dense.iloc[0]
                lines.append(f"- Dense: {notes.cell(d.mean_pct, d.std_pct, d.n, d['flags'], 'Dense')}")
            imp = mpart[mpart["branch"] == "imp"].sort_values("sparsity")
            if not imp.empty:
                cells = [f"{sparsity_cell(r.sparsity, _value(r.sparsity_all_weights))}: "
                         f"{notes.cell(r.mean_pct, r.std_pct, r.n, r.flags, f'IMP, S = {names.sparsity(r.sparsity)}')}"
                         for r in imp.itertuples()]
                lines.append("- IMP (pruned and fine-tuned A): " + "; ".join(cells))
            sparse = mpart[~mpart["branch"].isin(["dense", "imp"])]
            if not sparse.empty:
                ids = _series_ids(sparse, tags)
                cols = series.order(ids)
                rows = []
                for (s, k), cell in sparse.groupby(["sparsity", "k"], dropna=False, sort=True):
                    by_series = {i: notes.cell(r.mean_pct, r.std_pct, r.n, r.flags,
                                               f"S = {names.sparsity(s)}, k = {_k_label(k)}, {series.label_of(i)}")
                                 for i, r in zip(ids[cell.index], cell.itertuples())}
                    rows.append([sparsity_cell(s, _value(cell["sparsity_all_weights"].iloc[0])), _k_label(k)]
                                + [by_series[b] if b in by_series else notes.missing() for b in cols])
                if lines[-1] != "":
                    lines.append("")
                lines.append(markdown_table(["Sparsity", "k"] + [series.label_of(b) for b in cols], rows))
            if mpart["sparsity_all_weights"].notna().any():
                lines += ["", ALL_WEIGHTS_NOTE]
            parts.append(notes.append_to("\n".join(lines)))
    return frame, "\n\n".join(parts)


def _value(v) -> float | None:
    return None if _isnan(v) else float(v)


def _series_ids(frame: pd.DataFrame, tags: list[str]) -> pd.Series:
    """Each row's series (``series.ident``) from its branch and the series tags ``tags``."""
    method = frame["method"] if "method" in tags else pd.Series(None, index=frame.index, dtype=object)
    epoch = frame["match_epoch"] if "match_epoch" in tags else pd.Series(np.nan, index=frame.index)
    return pd.Series([series.ident(b, m, e) for b, m, e in zip(frame["branch"], method, epoch)], index=frame.index)


def _sort_series(frame: pd.DataFrame, keys: list[str], tags: list[str]) -> pd.DataFrame:
    """Rows by ``keys``, then series in display order (branches, then method, then epoch of B)."""
    ids = _series_ids(frame, tags)
    rank = ids.map({s: i for i, s in enumerate(series.order(ids))})
    return (frame.assign(_rank=rank).sort_values(keys + ["_rank"], na_position="first")
            .drop(columns="_rank").reset_index(drop=True))


def _sort_branches(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    order = {b: i for i, b in enumerate(branch_order(frame["branch"]))}
    rank = frame["branch"].map(order)
    sort_keys = [k for k in keys if k != "branch"]
    return (frame.assign(_rank=rank).sort_values(sort_keys + ["_rank"], na_position="first")
            .drop(columns="_rank").reset_index(drop=True))


# ---------------------------------------------------------------- diversity (Table 1)

DIVERSITY_COLUMNS = ("group", "n", "member_acc_mean", "member_acc_std", "ensemble_acc", "disagreement", "kl", "js")


def diversity_table(ensembles: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """One row per ensemble group: member acc mean ± std, ensemble acc, disagreement, KL, JS."""
    ens = tidy.prepare(ensembles, DIVERSITY_COLUMNS, "the diversity table")
    keys = present(ens, SETTING_KEYS + ("sparsity", "k"))
    dup = ens.duplicated(keys + ["group"], keep=False)
    if dup.any():
        first = ens[dup].iloc[0]
        raise UserError(
            f"{tidy.source_of(ens)}: several ensembles for group {first['group']!r} in the same setting "
            f"({', '.join(f'{k}={first[k]}' for k in keys)}); tag each ensemble so it is unique"
        )
    frame = pd.DataFrame({
        **{k: ens[k] for k in keys},
        "group": ens["group"].astype(str),
        "n": ens["n"].astype(int),
        "acc_mean_pct": ens["member_acc_mean"] * 100,
        "acc_std_pct": ens["member_acc_std"] * 100,
        "ensemble_acc_pct": ens["ensemble_acc"] * 100,
        "disagreement": ens["disagreement"],
        "kl": ens["kl"],
        "kl_one_way": ens["kl_one_way"] if "kl_one_way" in ens.columns else np.nan,
        "js": ens["js"],
        tidy.HEALTH: tidy.health_of(ens),
        "flags": [_ensemble_flags(r) for _, r in ens.iterrows()],
    })
    frame = frame.rename(columns={"group": "branch"})
    frame = _sort_branches(frame, keys + ["branch"]).rename(columns={"branch": "group"})

    parts = []
    for setting, part in settings(frame, keys):
        where = [f"S = {names.sparsity(setting['sparsity'])}" if setting.get("sparsity") is not None else "",
                 f"k = {_k_label(setting['k'])}" if setting.get("k") is not None else ""]
        title = "ensembles" + (" at " + ", ".join(w for w in where if w) if any(where) else "")
        notes = Notes()
        rows = [[names.branch(r.group) + notes.mark(names.branch(r.group), r.flags), str(r.n),
                 fmt_mean_std(r.acc_mean_pct, r.acc_std_pct, r.n),
                 _measured(r.ensemble_acc_pct, 2), _measured(r.disagreement, 4), _measured(r.kl, 4),
                 notes.missing() if _isnan(r.kl_one_way) else _measured(r.kl_one_way, 4), _measured(r.js, 4)]
                for r in part.itertuples()]
        header = ["Group", "Members", "Test acc. (%)", "Ensemble acc. (%)", "Disagreement", "KL (symmetrised)",
                  "KL (one way)", "JS"]
        parts.append(notes.append_to(f"{heading(setting, title)}\n\n{markdown_table(header, rows)}"))
    note = ("Ensemble accuracy: argmax of the mean softmax. Disagreement, KL and JS are averaged over all member pairs. "
            "KL (symmetrised) is the mean of KL(p_i||p_j) over ordered pairs, i.e. of 0.5 [KL(p_i||p_j) + "
            "KL(p_j||p_i)] over unordered pairs; KL (one way) is the mean of KL(p_i||p_j) over i < j, in member "
            "order; both in nats, as is JS.")
    return frame, "\n\n".join(parts) + "\n\n" + note


def _measured(value, digits: int) -> str:
    """A single measured number; non-finite reads ``diverged`` (a missing one is the caller's "–")."""
    return f"{float(value):.{digits}f}" if np.isfinite(float(value)) else tidy.DIVERGED


def _ensemble_flags(row: pd.Series) -> str:
    """Words for an ensemble whose record says its members include flagged runs, or whose numbers are
    non-finite ('' when neither)."""
    parts = []
    status = tidy.health_of(row.to_frame().T).iloc[0]
    if status != tidy.OK:
        reasons = row.get(tidy.HEALTH_REASONS)
        parts.append(f"{tidy.label(status)}" + (f" ({reasons})" if isinstance(reasons, str) and reasons else ""))
    bad = [c for c in ("member_acc_mean", "ensemble_acc", "disagreement", "kl", "js")
           if c in row.index and not np.isfinite(float(row[c]))]
    if bad:
        parts.append(f"{', '.join(bad)} {tidy.label(tidy.NONFINITE_STATUS)}")
    return "; ".join(parts)


# ---------------------------------------------------------------- early matching (Table 15)


def early_matching_table(runs: pd.DataFrame, k: int = 20, metric: str = "test_acc") -> tuple[pd.DataFrame, str]:
    """Permuted accuracy at rewind point ``k`` vs the epoch i at which B was matched.

    LTH and naive at the same ``k`` (they do not depend on the matching) are
    added as reference rows with an empty ``match_epoch``.
    """
    runs = series.blank_independent(tidy.prepare(runs, ["branch", "k", metric], "the early-matching table"))
    if "match_epoch" not in runs.columns:
        raise UserError(f"{tidy.source_of(runs)}: the early-matching table needs a match_epoch tag on permuted runs; "
                        "tag them --tag match_epoch=<epoch of B used for matching>")
    at_k = runs[runs["k"] == k]
    permuted = at_k[(at_k["branch"] == "permuted") & at_k["match_epoch"].notna()]
    if permuted.empty:
        raise UserError(f"{tidy.source_of(runs)}: no permuted runs with a match_epoch at k={k}; check the rewind point (--k) and tags")
    reference = at_k[at_k["branch"].isin(["lth", "naive"])].assign(match_epoch=np.nan)
    rows = pd.concat([permuted, reference], ignore_index=True)
    method = ["method"] if "method" in series.keys(permuted) else []  # several methods: one row each
    keys = present(rows, ("dataset", "model", "width", "sparsity")) + ["branch", *method, "match_epoch"]
    frame = aggregate(rows, keys, metric, scale=100.0).rename(columns={"mean": "mean_pct", "std": "std_pct"})
    frame.insert(keys.index("branch"), "k", k)
    frame = _sort_branches(frame, keys)

    parts = []
    for setting, part in settings(frame, ("dataset", "model", "width")):
        sparsities = sorted(part["sparsity"].unique()) if "sparsity" in part.columns else [None]
        header = ["Matched at epoch i"] + [f"S = {names.sparsity(s)}" for s in sparsities]

        notes = Notes()

        def cells(sel: pd.DataFrame, what: str) -> list[str]:
            out = []
            for s in sparsities:
                c = sel if s is None else sel[sel["sparsity"] == s]
                if c.empty:
                    out.append(notes.missing())
                    continue
                r = c.iloc[0]
                where = what + (f", S = {names.sparsity(s)}" if s is not None else "")
                out.append(notes.cell(r.mean_pct, r.std_pct, r.n, r["flags"], where))
            return out

        perm = part[part["branch"] == "permuted"]
        if method:
            table_rows = [[f"{_k_label(i)} ({names.method(m)})"] + cells(
                perm[(perm["match_epoch"] == i) & (perm["method"] == m)],
                f"permuted matched at epoch {_k_label(i)} by {names.method(m)}")
                for m in series.order_methods(perm["method"]) for i in sorted(perm["match_epoch"].unique())
                if ((perm["match_epoch"] == i) & (perm["method"] == m)).any()]
        else:
            table_rows = [[_k_label(i)] + cells(perm[perm["match_epoch"] == i],
                                                f"permuted matched at epoch {_k_label(i)}")
                          for i in sorted(perm["match_epoch"].unique())]
        for b in ("lth", "naive"):
            ref = part[part["branch"] == b]
            if not ref.empty:
                table_rows.append([f"{names.branch(b)} (reference)"] + cells(ref, names.branch(b)))
        title = f"permuted test accuracy (%) at k = {k} vs matching epoch"
        parts.append(notes.append_to(f"{heading(setting, title)}\n\n{markdown_table(header, table_rows)}"))
    return frame, "\n\n".join(parts)


# ---------------------------------------------------------------- LMC barriers per width


def lmc_table(table: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """Loss and error barriers (mean ± std over seeds) per width, mode and matching."""
    rows = barriers.ensure_barriers(tidy.prepare(table, [], "the LMC table"))
    keys = present(rows, ("dataset", "model", "width", "split", "mode", "permuted"))
    if "method" in rows.columns and rows["method"].map(lambda v: not series._blank(v)).any():
        keys.append("method")  # several matching methods: each its own barrier, never averaged
    if "permuted" not in keys or "mode" not in keys:
        raise UserError(f"{tidy.source_of(table)}: the LMC table needs mode and permuted columns; collect interpolate's output")
    parts_frames = []
    for column, scale in (("loss_barrier", 1.0), ("error_barrier", 100.0)):
        if column not in rows.columns:
            continue
        agg = aggregate(rows, keys, column, scale=scale, prefix=f"{column}_")
        if column == "error_barrier":
            agg = agg.rename(columns={"error_barrier_mean": "error_barrier_mean_pct",
                                      "error_barrier_std": "error_barrier_std_pct"})
        # each barrier keeps its own count and flags: a diverged REPAIR loss need not be a diverged error
        parts_frames.append(agg.rename(columns={c: f"{column}_{c}" for c in ("n", *FLAG_COLUMNS)}))
    frame = parts_frames[0]
    for extra in parts_frames[1:]:
        frame = frame.merge(extra, on=keys, how="outer")
    first = parts_frames[0].columns[len(keys) + 2].removesuffix("_n")  # the first barrier's n and n_nonfinite
    frame["n"] = frame[f"{first}_n"] + frame[f"{first}_n_nonfinite"]  # seeds in the cell, finite or not
    counts = [c for c in frame.columns if c.endswith(("_n", "_n_flagged", "_n_nonfinite", "_flags"))]
    frame = frame[[c for c in frame.columns if c not in counts and c != "n"] + ["n"] + counts]
    mode_rank = {m: i for i, m in enumerate(names.MODES)}
    frame = (frame.assign(_m=frame["mode"].map(lambda m: mode_rank.get(m, len(mode_rank))))
             .sort_values([k for k in keys if k != "mode"] + ["_m"]).drop(columns="_m").reset_index(drop=True))

    parts = []
    for setting, part in settings(frame, present(frame, ("dataset", "model", "split"))):
        split = setting.pop("split", None)
        methods = part["method"] if "method" in keys else pd.Series(None, index=part.index, dtype=object)
        combos = list(dict.fromkeys(zip(part["permuted"], part["mode"], methods)))
        combos.sort(key=lambda c: (c[0], mode_rank.get(c[1], len(mode_rank)), series.method_rank(c[2])))
        for barrier, column, std_column, label, digits in (
            ("loss_barrier", "loss_barrier_mean", "loss_barrier_std", "loss barrier", 3),
            ("error_barrier", "error_barrier_mean_pct", "error_barrier_std_pct", "error barrier (%)", 2),
        ):
            if column not in part.columns:
                continue
            notes = Notes()
            header = ["Width"] + [_path_label(p, m, me) for p, m, me in combos]
            body = []
            for w, wpart in part.groupby("width", sort=True) if "width" in part.columns else [(None, part)]:
                row = [names.width(w) if w is not None else "–"]
                for p, m, me in combos:
                    c = wpart[(wpart["permuted"] == p) & (wpart["mode"] == m)]
                    if "method" in keys:
                        c = c[c["method"].map(lambda v, me=me: series._blank(v) if series._blank(me) else v == me)]
                    if c.empty:
                        row.append(notes.missing())
                        continue
                    r = c.iloc[0]
                    where = ", ".join(x for x in (names.width(w) if w is not None else "", _path_label(p, m, me)) if x)
                    row.append(notes.cell(r[column], r[std_column], r[f"{barrier}_n"], r[f"{barrier}_flags"], where,
                                          digits))
                body.append(row)
            what = f"{label}" + (f", {split} split" if split else "")
            parts.append(notes.append_to(f"{heading(setting, what)}\n\n{markdown_table(header, body)}"))
    return frame, "\n\n".join(parts)


def _path_label(permuted: bool, mode_name: str, method=None) -> str:
    """'Permuted · REPAIR', with the matching method when the table has several: 'Permuted · REPAIR · weight
    matching'."""
    label = names.path_kind(permuted, mode_name)
    return label if series._blank(method) else f"{label} · {names.method(method)}"


# ---------------------------------------------------------------- baselines (branches x matching methods)


def baselines_table(runs: pd.DataFrame, matches: pd.DataFrame | None = None,
                    metric: str = "test_acc") -> tuple[pd.DataFrame, str]:
    """Every sparse branch and matching method per (setting, sparsity, k): ``baselines.baselines_table``."""
    from .baselines import baselines_table as build  # baselines reads the scorecard's test, which reads this module

    return build(runs, matches, metric)


KINDS: dict[str, Callable[..., tuple[pd.DataFrame, str]]] = {
    "accuracy": accuracy_table,
    "diversity": diversity_table,
    "early_matching": early_matching_table,
    "lmc": lmc_table,
    "baselines": baselines_table,
}
