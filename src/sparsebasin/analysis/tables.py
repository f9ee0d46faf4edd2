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
  error_barrier_std_pct, n]``.
(Key columns appear only when present in the input.)
"""

from __future__ import annotations

import math
from typing import Callable, Iterable

import numpy as np
import pandas as pd

from ..errors import UserError
from . import barriers, names, tidy

SETTING_KEYS = ("experiment", "dataset", "model", "width")
ACCURACY_METRICS = ("test_acc", "test_top5")


# ---------------------------------------------------------------- helpers


def present(df: pd.DataFrame, columns: Iterable[str]) -> list[str]:
    return [c for c in columns if c in df.columns]


def aggregate(df: pd.DataFrame, by: list[str], value: str, scale: float = 1.0, prefix: str = "") -> pd.DataFrame:
    """Mean, sample std (ddof=1) and count of ``value`` per ``by`` group; NaN keys kept."""
    values = df[value] * scale
    grouped = values.groupby([df[c] for c in by], dropna=False, sort=True) if by else values.groupby(np.zeros(len(df)))
    out = pd.DataFrame({
        f"{prefix}mean": grouped.mean(),
        f"{prefix}std": grouped.std(ddof=1),
        "n": grouped.count(),
    })
    out = out.reset_index() if by else out.reset_index(drop=True)
    return out


def fmt_mean_std(mean: float, std: float, n: int | float, digits: int = 2) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    count = 0 if n is None or _isnan(float(n)) else int(n)
    if count < 2 or std is None or math.isnan(std):
        return f"{mean:.{digits}f} (n={count})"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


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
    runs = tidy.prepare(runs, ["branch", *metrics], "the accuracy table")
    tidy.check_single_matching(runs)
    runs = runs.assign(**{c: runs[c] if c in runs.columns else np.nan for c in ("sparsity", "k")})
    setting_keys = present(runs, SETTING_KEYS)
    keys = setting_keys + ["sparsity", "k", "branch"]
    all_weights = weight_sparsity_by_cell(runs, setting_keys)
    frames, parts = [], []
    for m in metrics:
        frame = aggregate(runs, keys, m, scale=100.0, prefix="")
        frame = frame.rename(columns={"mean": "mean_pct", "std": "std_pct"})
        frame.insert(len(keys), "metric", m)
        frame["sparsity_all_weights"] = [all_weights.get(tuple(r[k] for k in setting_keys) + (r["sparsity"],))
                                         for _, r in frame.iterrows()]
        frames.append(_sort_branches(frame, keys))
    frame = pd.concat(frames, ignore_index=True)

    for setting, part in settings(frame):
        for m in metrics:
            mpart = part[part["metric"] == m]
            lines = [heading(setting, names.METRIC_LABELS[m]), ""]
            dense = mpart[mpart["branch"] == "dense"]
            if not dense.empty:
                d = dense.iloc[0]
                lines.append(f"- Dense: {fmt_mean_std(d.mean_pct, d.std_pct, d.n)}")
            imp = mpart[mpart["branch"] == "imp"].sort_values("sparsity")
            if not imp.empty:
                cells = [f"{sparsity_cell(r.sparsity, _value(r.sparsity_all_weights))}: "
                         f"{fmt_mean_std(r.mean_pct, r.std_pct, r.n)}" for r in imp.itertuples()]
                lines.append("- IMP (pruned and fine-tuned A): " + "; ".join(cells))
            sparse = mpart[~mpart["branch"].isin(["dense", "imp"])]
            if not sparse.empty:
                cols = branch_order(sparse["branch"])
                rows = []
                for (s, k), cell in sparse.groupby(["sparsity", "k"], dropna=False, sort=True):
                    by_branch = {r.branch: fmt_mean_std(r.mean_pct, r.std_pct, r.n) for r in cell.itertuples()}
                    rows.append([sparsity_cell(s, _value(cell["sparsity_all_weights"].iloc[0])), _k_label(k)]
                                + [by_branch.get(b, "–") for b in cols])
                if lines[-1] != "":
                    lines.append("")
                lines.append(markdown_table(["Sparsity", "k"] + [names.branch(b) for b in cols], rows))
            if mpart["sparsity_all_weights"].notna().any():
                lines += ["", ALL_WEIGHTS_NOTE]
            parts.append("\n".join(lines))
    return frame, "\n\n".join(parts)


def _value(v) -> float | None:
    return None if _isnan(v) else float(v)


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
    })
    frame = frame.rename(columns={"group": "branch"})
    frame = _sort_branches(frame, keys + ["branch"]).rename(columns={"branch": "group"})

    parts = []
    for setting, part in settings(frame, keys):
        where = [f"S = {names.sparsity(setting['sparsity'])}" if setting.get("sparsity") is not None else "",
                 f"k = {_k_label(setting['k'])}" if setting.get("k") is not None else ""]
        title = "ensembles" + (" at " + ", ".join(w for w in where if w) if any(where) else "")
        rows = [[names.branch(r.group), str(r.n), fmt_mean_std(r.acc_mean_pct, r.acc_std_pct, r.n),
                 f"{r.ensemble_acc_pct:.2f}", f"{r.disagreement:.4f}", f"{r.kl:.4f}",
                 "–" if _isnan(r.kl_one_way) else f"{r.kl_one_way:.4f}", f"{r.js:.4f}"]
                for r in part.itertuples()]
        header = ["Group", "Members", "Test acc. (%)", "Ensemble acc. (%)", "Disagreement", "KL (symmetrised)",
                  "KL (one way)", "JS"]
        parts.append(f"{heading(setting, title)}\n\n{markdown_table(header, rows)}")
    note = ("Ensemble accuracy: argmax of the mean softmax. Disagreement, KL and JS are averaged over all member pairs. "
            "KL (symmetrised) is the mean of KL(p_i||p_j) over ordered pairs, i.e. of 0.5 [KL(p_i||p_j) + "
            "KL(p_j||p_i)] over unordered pairs; KL (one way) is the mean of KL(p_i||p_j) over i < j, in member "
            "order; both in nats, as is JS.")
    return frame, "\n\n".join(parts) + "\n\n" + note


# ---------------------------------------------------------------- early matching (Table 15)


def early_matching_table(runs: pd.DataFrame, k: int = 20, metric: str = "test_acc") -> tuple[pd.DataFrame, str]:
    """Permuted accuracy at rewind point ``k`` vs the epoch i at which B was matched.

    LTH and naive at the same ``k`` (they do not depend on the matching) are
    added as reference rows with an empty ``match_epoch``.
    """
    runs = tidy.prepare(runs, ["branch", "k", metric], "the early-matching table")
    if "match_epoch" not in runs.columns:
        raise UserError(f"{tidy.source_of(runs)}: the early-matching table needs a match_epoch tag on permuted runs; "
                        "tag them --tag match_epoch=<epoch of B used for matching>")
    at_k = runs[runs["k"] == k]
    permuted = at_k[(at_k["branch"] == "permuted") & at_k["match_epoch"].notna()]
    if permuted.empty:
        raise UserError(f"{tidy.source_of(runs)}: no permuted runs with a match_epoch at k={k}; check the rewind point (--k) and tags")
    reference = at_k[at_k["branch"].isin(["lth", "naive"])].assign(match_epoch=np.nan)
    rows = pd.concat([permuted, reference], ignore_index=True)
    keys = present(rows, ("dataset", "model", "width", "sparsity")) + ["branch", "match_epoch"]
    frame = aggregate(rows, keys, metric, scale=100.0).rename(columns={"mean": "mean_pct", "std": "std_pct"})
    frame.insert(keys.index("branch"), "k", k)
    frame = _sort_branches(frame, keys)

    parts = []
    for setting, part in settings(frame, ("dataset", "model", "width")):
        sparsities = sorted(part["sparsity"].unique()) if "sparsity" in part.columns else [None]
        header = ["Matched at epoch i"] + [f"S = {names.sparsity(s)}" for s in sparsities]

        def cells(sel: pd.DataFrame) -> list[str]:
            out = []
            for s in sparsities:
                c = sel if s is None else sel[sel["sparsity"] == s]
                out.append(fmt_mean_std(c.iloc[0].mean_pct, c.iloc[0].std_pct, c.iloc[0].n) if not c.empty else "–")
            return out

        perm = part[part["branch"] == "permuted"]
        table_rows = [[_k_label(i)] + cells(perm[perm["match_epoch"] == i]) for i in sorted(perm["match_epoch"].unique())]
        for b in ("lth", "naive"):
            ref = part[part["branch"] == b]
            if not ref.empty:
                table_rows.append([f"{names.branch(b)} (reference)"] + cells(ref))
        title = f"permuted test accuracy (%) at k = {k} vs matching epoch"
        parts.append(f"{heading(setting, title)}\n\n{markdown_table(header, table_rows)}")
    return frame, "\n\n".join(parts)


# ---------------------------------------------------------------- LMC barriers per width


def lmc_table(table: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """Loss and error barriers (mean ± std over seeds) per width, mode and matching."""
    rows = barriers.ensure_barriers(tidy.prepare(table, [], "the LMC table"))
    keys = present(rows, ("dataset", "model", "width", "split", "mode", "permuted"))
    if "permuted" not in keys or "mode" not in keys:
        raise UserError(f"{tidy.source_of(table)}: the LMC table needs mode and permuted columns; collect interpolate's output")
    parts_frames = []
    if "loss_barrier" in rows.columns:
        parts_frames.append(aggregate(rows, keys, "loss_barrier", prefix="loss_barrier_"))
    if "error_barrier" in rows.columns:
        parts_frames.append(aggregate(rows, keys, "error_barrier", scale=100.0, prefix="error_barrier_")
                            .rename(columns={"error_barrier_mean": "error_barrier_mean_pct", "error_barrier_std": "error_barrier_std_pct"}))
    frame = parts_frames[0]
    for extra in parts_frames[1:]:
        frame = frame.merge(extra, on=keys + ["n"], how="outer")
    frame = frame[[c for c in frame.columns if c != "n"] + ["n"]]
    mode_rank = {m: i for i, m in enumerate(names.MODES)}
    frame = (frame.assign(_m=frame["mode"].map(lambda m: mode_rank.get(m, len(mode_rank))))
             .sort_values([k for k in keys if k != "mode"] + ["_m"]).drop(columns="_m").reset_index(drop=True))

    parts = []
    for setting, part in settings(frame, present(frame, ("dataset", "model", "split"))):
        split = setting.pop("split", None)
        combos = list(dict.fromkeys(zip(part["permuted"], part["mode"])))
        combos.sort(key=lambda c: (c[0], mode_rank.get(c[1], len(mode_rank))))
        for column, std_column, label, digits in (
            ("loss_barrier_mean", "loss_barrier_std", "loss barrier", 3),
            ("error_barrier_mean_pct", "error_barrier_std_pct", "error barrier (%)", 2),
        ):
            if column not in part.columns:
                continue
            header = ["Width"] + [names.path_kind(p, m) for p, m in combos]
            body = []
            for w, wpart in part.groupby("width", sort=True) if "width" in part.columns else [(None, part)]:
                row = [names.width(w) if w is not None else "–"]
                for p, m in combos:
                    c = wpart[(wpart["permuted"] == p) & (wpart["mode"] == m)]
                    row.append(fmt_mean_std(c.iloc[0][column], c.iloc[0][std_column], c.iloc[0]["n"], digits) if not c.empty else "–")
                body.append(row)
            what = f"{label}" + (f", {split} split" if split else "")
            parts.append(f"{heading(setting, what)}\n\n{markdown_table(header, body)}")
    return frame, "\n\n".join(parts)


KINDS: dict[str, Callable[..., tuple[pd.DataFrame, str]]] = {
    "accuracy": accuracy_table,
    "diversity": diversity_table,
    "early_matching": early_matching_table,
    "lmc": lmc_table,
}
