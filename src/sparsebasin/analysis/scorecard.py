"""Did it reproduce? Every cell of ours set against the paper's published number, and the paper's claims.

A cell is (dataset, model, width, sparsity, k, branch, metric) for Tables 5-14,
the same plus ``match_epoch`` for Table 15, and (dataset, model, width,
sparsity, group, metric) for Table 1, whose metrics are member accuracy,
ensemble accuracy, disagreement, KL and JS. For each cell of ours:

- our mean, sample std (ddof=1) and n over seeds, and the paper's mean, std and n
  (``sparsebasin.reference``);
- ``diff`` = ours − paper, in percentage points for accuracies;
- ``verdict``: ``within`` when |diff| <= sigma * sqrt(s_ours²/n_ours + s_paper²/n_paper),
  else ``above`` or ``below``; ``no_reference`` when the paper has no such cell.
  Each std is floored where it is missing or tiny (single runs, n = 1): at
  0.1 pp for accuracies and disagreement (a fraction, so 0.001), and at 1% of
  the paper's value for KL and JS, which have no natural unit to floor in.

Only our runs in the paper's setting are compared with it (``series.is_paper``:
activation matching of B at the end of its training); a permuted series of
another matching method or epoch of B is its own cell, ``no_reference``, with
its ``method`` / ``match_epoch``, and stays out of the claims.

Published cells of the datasets and models we ran that we did not run are
listed with verdict ``not_run``, so a partial run shows what is missing; a
cell we ran whose every value came out non-finite is ``diverged``. Cells
follow ``tidy.FLAG_RULE``: runs flagged dead or diverged are in the mean and
the cell says so (``n_flagged``, ``flags``; † in the Markdown).
Table 1 does not state its rewind point, so its cells match ours at any k;
its cell key is the ensemble's ``group`` (the tidy table's equal ``branch``
tag is dropped, not duplicated).

The claims, each tested per cell on our seeds with a one-sided paired
t-test (``CLAIM_TEST``, ``CLAIM_ALPHA`` = 0.05; a cell with a single seed pair
is not tested) and counted as significant / not significant / too few seeds;
the headline gives the count for permuted > naive, and nothing else in any
output counts those cells differently. The paper publishes means, not seeds,
so on its numbers only the direction of the means is counted:

- permuted > naive, and LTH >= permuted (tested: LTH − permuted > 0), per
  (dataset, model, width, sparsity, k), paired by seed;
- the permuted − naive gap grows with sparsity: per (dataset, model, width, k)
  with two or more sparsities, the gap at the highest sparsity minus the gap
  at the lowest, per seed;
- the matched barrier shrinks with width: per (dataset, model, mode, split)
  with two or more widths, the matched loss barrier at the narrowest width
  minus the one at the widest, per seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .. import reference
from . import names, series, tidy
from .tables import ACCURACY_METRICS, aggregate, markdown_table  # noqa: F401 (ACCURACY_METRICS re-exported)

FLOOR_PP = 0.1
DIVERSITY_METRICS = ("member_acc", "ensemble_acc", "disagreement", "kl", "js")
VERDICTS = ("within", "above", "below", "diverged", "no_reference", "not_run")
COLUMNS = ("section", "table", "dataset", "model", "width", "sparsity", "k", "branch", "match_epoch", "metric",
           "ours_mean", "ours_std", "ours_n", "paper_mean", "paper_std", "paper_n", "diff", "unit", "threshold",
           "verdict", "n_flagged", "n_nonfinite", "flags")
_ACC_KEYS = ["dataset", "model", "width", "sparsity", "k", "branch"]


@dataclass
class Scorecard:
    cells: pd.DataFrame  # COLUMNS, one row per cell (ours, and published ones not run)
    claims: list = field(default_factory=list)  # Claim, tested per cell over seeds
    sigma: float = 2.0
    scope: list[str] = field(default_factory=list)  # "dataset model" pairs we compared
    other_series: list[str] = field(default_factory=list)  # matchings beside the paper's (no_reference, no claims)

    def count(self, verdict: str) -> int:
        return int((self.cells["verdict"] == verdict).sum()) if len(self.cells) else 0

    @property
    def published(self) -> int:
        """Published cells of our settings: compared, diverged on our side, or not run."""
        if not len(self.cells):
            return 0
        return int(pd.to_numeric(self.cells["paper_mean"], errors="coerce").notna().sum())

    @property
    def flagged(self) -> int:
        """Cells of ours whose numbers include flagged runs or non-finite values (marked † in the Markdown)."""
        if not len(self.cells):
            return 0
        return int(self.cells["flags"].map(lambda f: isinstance(f, str) and bool(f)).sum())

    def headline(self) -> str:
        claim = next((c for c in self.claims if c.name == "permuted > naive"), None)
        tail = claim.text() if claim and claim.cells else "no permuted/naive cells to test"
        flagged = (f"; {self.flagged} of our cells flagged {tidy.FLAG_MARK} (runs dead or diverged, or values "
                   "non-finite)" if self.flagged else "")
        if not self.published:
            scope = ", ".join(self.scope) or "nothing compared"
            return f"No published reference for this experiment ({scope}){flagged}; {tail}."
        diverged = f", {self.count('diverged')} diverged" if self.count("diverged") else ""
        return (f"{self.count('within')} of {self.published} published cells reproduced within {self.sigma:g}σ "
                f"({self.count('above')} above, {self.count('below')} below{diverged}, "
                f"{self.count('not_run')} not run){flagged}; {tail}.")

    def as_dict(self) -> dict:
        """The JSON: headline, counts, the claims with their per-cell tests, and every cell (summary.md reads
        the Table 1 and Table 15 cells from here). Non-finite numbers are null: the file stays valid JSON."""
        return _json_safe({"headline": self.headline(), "sigma": self.sigma, "scope": self.scope,
                           "counts": {v: self.count(v) for v in VERDICTS}, "published": self.published,
                           "flagged": self.flagged, "rule": tidy.FLAG_RULE,
                           "claims": [c.as_dict() for c in self.claims],
                           "cells": self.cells.to_dict("records")})


def _json_safe(obj):
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if obj is None or isinstance(obj, str):
        return obj
    try:
        return None if pd.isna(obj) else str(obj)
    except (TypeError, ValueError):
        return str(obj)


# ---------------------------------------------------------------- comparison


def _floored(std, floor: float) -> float:
    return floor if std is None or not np.isfinite(std) or std < floor else float(std)


def verdict(diff: float, s_ours, n_ours, s_paper, n_paper, sigma: float, floor: float = FLOOR_PP) -> tuple[float, str]:
    """(threshold, within|above|below) for ours − paper = ``diff``."""
    se2 = _floored(s_ours, floor) ** 2 / max(int(n_ours), 1) + _floored(s_paper, floor) ** 2 / max(int(n_paper), 1)
    threshold = sigma * math.sqrt(se2)
    if abs(diff) <= threshold:
        return threshold, "within"
    return threshold, "above" if diff > 0 else "below"


_OURS = {"mean": "ours_mean", "std": "ours_std", "n": "ours_n"}


def _aggregate(df: pd.DataFrame, keys: list[str], value: str, scale: float) -> pd.DataFrame:
    """Our cells by ``tables.aggregate`` (tidy.FLAG_RULE: flagged runs in and counted, non-finite out and counted)."""
    return aggregate(df, keys, value, scale=scale).rename(columns=_OURS)


def _key(row, keys) -> tuple:
    out = []
    for k in keys:
        v = row[k]
        out.append(None if v is None or (isinstance(v, float) and math.isnan(v)) else
                   round(float(v), 6) if isinstance(v, (int, float, np.number)) else str(v))
    return tuple(out)


def _compare(ours: pd.DataFrame, paper: pd.DataFrame, keys: list[str], section: str, sigma: float,
             unit: str = "pp", floor_of=None, carry=()) -> list[dict]:
    """One row per cell of ours (verdict or no_reference), then the paper's cells we lack (not_run);
    ``carry``: more columns of ours each row keeps (the series tags)."""
    floor_of = floor_of or (lambda metric, paper_mean: FLOOR_PP)
    index = {_key(r, keys): r for _, r in paper.iterrows()}
    seen, rows = set(), []
    for _, o in ours.iterrows():
        k = _key(o, keys)
        p = index.get(k)
        row = {c: o.get(c) for c in (*keys, *carry)} | {"section": section, "unit": unit, "ours_mean": o["ours_mean"],
                                              "ours_std": o["ours_std"], "ours_n": int(o["ours_n"]),
                                              **{c: o.get(c, d) for c, d in (("n_flagged", 0), ("n_nonfinite", 0),
                                                                              ("flags", ""))}}
        diverged = not np.isfinite(float(o["ours_mean"]))  # ran, but no finite value to compare
        if p is None or not np.isfinite(p["mean"]):
            rows.append(row | {"verdict": "diverged" if diverged else "no_reference"})
            continue
        seen.add(k)
        n_paper = int(p["n"]) if np.isfinite(p["n"]) else 1
        paper = {"table": p["table"], "paper_mean": p["mean"], "paper_std": p["std"], "paper_n": n_paper}
        if diverged:
            rows.append(row | paper | {"verdict": "diverged"})
            continue
        diff = float(o["ours_mean"]) - float(p["mean"])
        threshold, v = verdict(diff, o["ours_std"], o["ours_n"], p["std"], n_paper, sigma,
                               floor_of(o["metric"], float(p["mean"])))
        rows.append(row | paper | {"diff": diff, "threshold": threshold, "verdict": v})
    for k, p in index.items():
        if k not in seen and np.isfinite(p["mean"]):
            rows.append({c: p[c] for c in keys} | {"section": section, "unit": unit, "table": p["table"],
                                                   "paper_mean": p["mean"], "paper_std": p["std"],
                                                   "paper_n": int(p["n"]) if np.isfinite(p["n"]) else 1,
                                                   "verdict": "not_run"})
    return rows


def _in_scope(paper: pd.DataFrame, pairs: set) -> pd.DataFrame:
    mask = [(d, m) in pairs for d, m in zip(paper["dataset"], paper["model"])]
    return paper[mask]


def _long(df: pd.DataFrame, metrics, keys: list[str], scale: float = 100.0) -> pd.DataFrame:
    parts = []
    for m in metrics:
        if m in df.columns:
            agg = _aggregate(df, keys, m, scale)
            agg["metric"] = m
            parts.append(agg)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=[*keys, "metric"])


def _series_rows(runs: pd.DataFrame, metrics, keys: list[str], paper: pd.DataFrame, section: str, sigma: float,
                 epoch: bool) -> list[dict]:
    """Our cells of the paper's setting against the paper (``_compare``), then every other series (another
    matching method or epoch of B: ``series``) as ``no_reference``, never mixed in; each cell keeps its series
    tags when the table has several series."""
    runs = series.blank_independent(runs)
    tags = [t for t in series.keys(runs) if t not in keys]
    mine = series.is_paper(runs, epoch)
    rows = _compare(_long(runs[mine], metrics, [*keys, *tags]), paper, [*keys, "metric"], section, sigma,
                    carry=tags)
    others = runs[~mine]
    if len(others):
        ours = _long(others, metrics, [*keys, *tags])
        rows += _compare(ours, paper.iloc[0:0], [*keys, "metric"], section, sigma, carry=tags)
    return rows


def accuracy_rows(runs: pd.DataFrame, sigma: float, metrics=("test_acc",)) -> tuple[list[dict], set]:
    """Tables 5-14 from the runs table (sweep runs: the sparse branches; the paper has lth, naive, permuted)."""
    sparse = runs[runs["branch"].isin(names.SPARSE_BRANCHES) & runs["k"].notna() & runs["sparsity"].notna()]
    if sparse.empty:
        return [], set()
    pairs = set(zip(sparse["dataset"], sparse["model"]))
    paper = _in_scope(reference.load("accuracy"), pairs)
    paper = paper[paper["metric"].isin(metrics)]
    return _series_rows(sparse, metrics, _ACC_KEYS, paper, "accuracy", sigma, epoch=True), pairs


def early_rows(early: pd.DataFrame, sigma: float, metrics=("test_acc",)) -> tuple[list[dict], set]:
    """Table 15: lth and naive at k (no match_epoch), permuted per the epoch of B it was matched at (by
    activation matching; another method is its own series, no_reference)."""
    early = early[early["branch"].isin(names.SPARSE_BRANCHES)].copy()
    if early.empty:
        return [], set()
    if "match_epoch" not in early.columns:
        early["match_epoch"] = np.nan
    early.loc[early["branch"] != "permuted", "match_epoch"] = np.nan
    pairs = set(zip(early["dataset"], early["model"]))
    keys = [*_ACC_KEYS, "match_epoch"]
    paper = _in_scope(reference.load("early_matching"), pairs)
    paper = paper[paper["metric"].isin(metrics)]
    return _series_rows(early, metrics, keys, paper, "early_matching", sigma, epoch=False), pairs


def _diversity_floor(metric: str, paper_mean: float) -> float:
    if metric == "disagreement":
        return FLOOR_PP / 100
    if metric in ("kl", "js"):
        return max(0.01 * abs(paper_mean), 1e-6)
    return FLOOR_PP


def diversity_rows(ensembles: pd.DataFrame, sigma: float) -> tuple[list[dict], set]:
    """Table 1: per group, member and ensemble accuracy (pp), disagreement, KL, JS (their own units).

    The group is ``group`` (the ensemble step's name); the tidy table also
    carries the ``branch`` tag with the same value, which is dropped so the
    cell key has one branch column.
    """
    if ensembles.empty:
        return [], set()
    ens = ensembles
    if "group" in ens.columns:
        ens = ens.drop(columns=[c for c in ("branch",) if c in ens.columns]).rename(columns={"group": "branch"})
    pairs = set(zip(ens["dataset"], ens["model"]))
    keys = ["dataset", "model", "width", "sparsity", "branch"]
    ref = _in_scope(reference.load("diversity").rename(columns={"group": "branch"}), pairs)
    from .tables import _ensemble_flags

    flags = pd.Series([_ensemble_flags(r) for _, r in ens.iterrows()], index=ens.index, dtype=object)
    flagged = tidy.flagged(ens).astype(int)
    rows = []
    for metric in DIVERSITY_METRICS:
        pct = metric.endswith("_acc")
        scale = 100.0 if pct else 1.0
        if metric == "member_acc":
            ours = ens[keys].copy()
            ours["ours_mean"] = ens["member_acc_mean"] * 100
            ours["ours_std"] = ens["member_acc_std"] * 100
            ours["ours_n"] = ens["n"]
            paper = ref[["table", *keys]].assign(mean=ref["member_acc_mean"], std=ref["member_acc_std"], n=ref["n"])
        else:
            if metric not in ens.columns:
                continue
            ours = ens[keys].copy()
            ours["ours_mean"] = ens[metric] * scale
            ours["ours_std"] = np.nan  # one ensemble: one number
            ours["ours_n"] = 1
            paper = ref[["table", *keys]].assign(mean=pd.to_numeric(ref[metric], errors="coerce"), std=np.nan, n=1)
        ours["n_flagged"] = flagged
        ours["n_nonfinite"] = tidy.nonfinite(ours["ours_mean"]).astype(int)
        ours["flags"] = flags
        ours["metric"] = metric
        paper = paper.assign(metric=metric)
        rows += _compare(ours, paper, [*keys, "metric"], "diversity", sigma, unit="pp" if pct else "",
                         floor_of=_diversity_floor)
    return rows, pairs


# ---------------------------------------------------------------- claims

CLAIM_ALPHA = 0.05
MIN_PAIRS = 2  # one pair has no spread: nothing to test
CLAIM_TEST = "one-sided paired t-test over seeds"
CLAIM_RESULTS = ("significant", "not significant", "too few seeds")


@dataclass
class Claim:
    """One claim of the paper, tested per cell over seeds (``CLAIM_TEST`` at ``CLAIM_ALPHA``).

    Per cell the paired difference d (pp for accuracies) of each seed is
    tested one-sided for d > 0 (H0: mean d <= 0). The t-test pays for few seeds
    through its degrees of freedom (two seeds need t > 6.31), so it is used
    from ``MIN_PAIRS`` = 2 pairs; a single pair has no spread and the cell has
    too few seeds. Exact sign or signed-rank tests were not chosen: with the
    paper's 3 seeds their smallest one-sided p is 0.125, so no cell could ever
    be significant. ``held`` counts the cells whose mean d is in the claimed
    direction (descriptive, and the only thing the paper's means allow:
    ``paper_held``).
    """

    name: str
    significant: int = 0
    not_significant: int = 0
    too_few: int = 0
    held: int = 0
    paper_held: int | None = None
    paper_cells: int | None = None
    hypothesis: str = ""
    rows: list = field(default_factory=list)  # per cell: keys, n, mean, std, t, p, result, nonfinite

    @property
    def cells(self) -> int:
        return self.significant + self.not_significant + self.too_few

    def text(self) -> str:
        """The one count every output prints: 'permuted > naive significant in X of Y cells (test, alpha; Z ...)'."""
        few = f"; {self.too_few} {'cell' if self.too_few == 1 else 'cells'} with fewer than {MIN_PAIRS} seeds, " \
            "not tested" if self.too_few else ""
        return (f"{self.name} significant in {self.significant} of {self.cells} cells "
                f"({CLAIM_TEST}, α = {CLAIM_ALPHA:g}{few})")

    def as_dict(self) -> dict:
        return {"name": self.name, "hypothesis": self.hypothesis, "test": CLAIM_TEST, "alpha": CLAIM_ALPHA,
                "min_pairs": MIN_PAIRS, "significant": self.significant, "not_significant": self.not_significant,
                "too_few": self.too_few, "cells": self.cells, "held": self.held, "paper_held": self.paper_held,
                "paper_cells": self.paper_cells, "text": self.text(), "rows": _json_safe(self.rows)}


def paired_test(diffs) -> dict:
    """One-sided paired t-test of mean(diffs) > 0 over seeds: n, mean, std, t, p and the result word.

    Non-finite differences cannot be tested; they are left out and counted
    (``nonfinite``). With every difference equal (std 0) t is infinite: p is 0
    when they are positive, 1 otherwise.
    """
    from scipy.special import stdtr  # Student's t CDF (scipy.stats takes seconds to import)

    d = np.asarray(diffs, dtype=float)
    bad = int((~np.isfinite(d)).sum())
    d = d[np.isfinite(d)]
    n = len(d)
    out = {"n": n, "nonfinite": bad, "mean": float(d.mean()) if n else math.nan,
           "std": float(d.std(ddof=1)) if n > 1 else math.nan, "t": math.nan, "p": math.nan}
    if n < MIN_PAIRS:
        return out | {"result": "too few seeds"}
    if out["std"] == 0:
        out["t"], out["p"] = (math.inf, 0.0) if out["mean"] > 0 else (-math.inf if out["mean"] < 0 else math.nan, 1.0)
    else:
        out["t"] = out["mean"] / (out["std"] / math.sqrt(n))
        out["p"] = float(stdtr(n - 1, -out["t"]))  # P(T >= t), T ~ t(n - 1)
    return out | {"result": "significant" if out["p"] < CLAIM_ALPHA else "not significant"}


def _claim(name: str, hypothesis: str, cells: list[tuple[dict, np.ndarray]]) -> Claim:
    claim = Claim(name, hypothesis=hypothesis)
    for key, diffs in cells:
        r = paired_test(diffs)
        claim.rows.append(key | r)
        claim.significant += r["result"] == "significant"
        claim.not_significant += r["result"] == "not significant"
        claim.too_few += r["result"] == "too few seeds"
        claim.held += bool(np.isfinite(r["mean"]) and r["mean"] > 0)
    return claim


_CELL = ["dataset", "model", "width", "sparsity", "k"]


def _by_seed(runs: pd.DataFrame, metric: str = "test_acc", column: str = "branch") -> pd.DataFrame:
    """Accuracy (%) per (cell, seed) with one column per sparse branch that ran there (``column="series"``: per
    series, ``series.assign``): a run whose value is non-finite is +inf here (so it is counted, not mistaken
    for a run that is missing, which is NaN). Two series of one column would be averaged: the caller passes
    the runs of one series per branch (``series.paper_runs``) or ``column="series"``."""
    sparse = runs[runs["branch"].isin(names.SPARSE_BRANCHES) & runs["k"].notna() & runs["sparsity"].notna()]
    if sparse.empty or metric not in sparse.columns:
        return pd.DataFrame()
    value = pd.to_numeric(sparse[metric], errors="coerce") * 100
    sparse = sparse.assign(seed=sparse["seed"] if "seed" in sparse.columns else 0,
                           _v=value.where(~tidy.nonfinite(value), np.inf),
                           **{c: sparse[c] if c in sparse.columns else np.nan for c in _CELL})
    # dropna=False: a cell whose key has a missing tag (no width column) is still a cell
    return sparse.pivot_table(index=[*_CELL, "seed"], columns=column, values="_v", aggfunc="mean", dropna=False)


def _diff(a, b) -> np.ndarray:
    """a − b for the seeds that ran both (NaN is a run that is missing); NaN, counted as non-finite by the
    test, where either value was non-finite (inf)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    both = ~np.isnan(a) & ~np.isnan(b)
    a, b = a[both], b[both]
    return np.where(np.isfinite(a) & np.isfinite(b), a - np.where(np.isfinite(b), b, 0.0), np.nan)


def _pair_cells(by_seed: pd.DataFrame, a: str, b: str) -> list[tuple[dict, np.ndarray]]:
    if by_seed.empty or a not in by_seed.columns or b not in by_seed.columns:
        return []
    out = []
    cells = by_seed.index.droplevel("seed")
    values = by_seed[[a, b]].to_numpy(dtype=float)
    for key, idx in pd.Series(range(len(cells)), index=cells).groupby(level=_CELL, sort=True, dropna=False):
        d = _diff(values[idx.to_numpy(), 0], values[idx.to_numpy(), 1])
        if len(d):
            out.append((dict(zip(_CELL, key)), d))
    return out


def _gap_cells(by_seed: pd.DataFrame) -> list[tuple[dict, np.ndarray]]:
    """Per (dataset, model, width, k) with two or more sparsities: the gap at the highest minus the lowest, per seed."""
    if by_seed.empty or not {"permuted", "naive"} <= set(by_seed.columns):
        return []
    ran = by_seed["permuted"].notna() & by_seed["naive"].notna()
    gap = pd.Series(_diff(by_seed["permuted"], by_seed["naive"]), index=by_seed.index[ran.to_numpy()], name="gap")
    gap = gap.fillna(np.inf).reset_index()  # a non-finite gap stays counted (inf), unlike a seed not run
    out = []
    for key, part in gap.groupby(["dataset", "model", "width", "k"], sort=True, dropna=False):
        if part["sparsity"].nunique() < 2:
            continue
        lo, hi = part["sparsity"].min(), part["sparsity"].max()
        wide = part.pivot_table(index="seed", columns="sparsity", values="gap")
        d = _diff(wide[hi], wide[lo])
        out.append((dict(zip(["dataset", "model", "width", "k"], key)) | {"sparsity": f"{names.sparsity(lo)} → "
                                                                            f"{names.sparsity(hi)}"}, d))
    return out


def _barrier_cells(barriers: pd.DataFrame | None) -> list[tuple[dict, np.ndarray]]:
    """Per (dataset, model, mode, split) with two or more widths: narrowest minus widest matched barrier, per seed."""
    if barriers is None or barriers.empty or "loss_barrier" not in barriers.columns or "width" not in barriers.columns:
        return []
    matched = barriers[barriers["permuted"] == True].copy()  # noqa: E712 (a boolean column)
    if "method" in matched.columns:  # the paper's matching only: another method is another series
        matched = matched[matched["method"].map(lambda m: series._blank(m) or str(m) == series.PAPER_METHOD)]
    if "seed" not in matched.columns:
        matched["seed"] = 0
    value = pd.to_numeric(matched["loss_barrier"], errors="coerce")
    matched["_b"] = value.where(~tidy.nonfinite(value), np.inf)  # a diverged barrier is counted, not dropped
    keys = [c for c in ("dataset", "model", "mode", "split") if c in matched.columns]
    out = []
    for key, part in (matched.groupby(keys, sort=True, dropna=False) if keys else [((), matched)]):
        key = key if isinstance(key, tuple) else (key,)
        if part["width"].nunique() < 2:
            continue
        lo, hi = part["width"].min(), part["width"].max()
        wide = part.pivot_table(index="seed", columns="width", values="_b", aggfunc="mean")
        d = _diff(wide[lo], wide[hi])
        out.append((dict(zip(keys, key)) | {"width": f"{names.width(lo)} → {names.width(hi)}"}, d))
    return out


def _paper_means(metric: str = "test_acc") -> pd.DataFrame:
    ref = reference.load("accuracy")
    ref = ref[ref["metric"] == metric]
    return ref.set_index(["dataset", "model", "width", "sparsity", "k", "branch"])["mean"].unstack("branch")


def _paper_held(table: pd.DataFrame, a: str, b: str, op) -> tuple[int, int]:
    if table.empty or a not in table.columns or b not in table.columns:
        return 0, 0
    both = table[[a, b]].dropna()
    return int(op(both[a], both[b]).sum()), len(both)


def _paper_gap_grows(table: pd.DataFrame) -> tuple[int, int]:
    if table.empty or not {"permuted", "naive"} <= set(table.columns):
        return 0, 0
    gap = (table["permuted"] - table["naive"]).dropna().reset_index(name="gap")
    held = cells = 0
    for _, part in gap.groupby(["dataset", "model", "width", "k"]):
        if part["sparsity"].nunique() < 2:
            continue
        part = part.sort_values("sparsity")
        cells += 1
        held += int(part["gap"].iloc[-1] > part["gap"].iloc[0])
    return held, cells


def claims(runs: pd.DataFrame, barriers: pd.DataFrame | None = None, scope: set | None = None) -> list[Claim]:
    """The paper's claims on our seeds (tested per cell), with the paper's own means where it has them: on the
    runs of the paper's setting only (``series.paper_runs``: activation matching of B at T), whatever other
    matching methods or epochs the experiment adds beside it."""
    by_seed = _by_seed(series.paper_runs(runs)) if "branch" in runs.columns else pd.DataFrame()
    paper = _paper_means()
    if scope:
        keep = [(d, m) in scope for d, m in zip(paper.index.get_level_values(0), paper.index.get_level_values(1))]
        paper = paper[keep]
    else:
        paper = paper.iloc[0:0]
    out = []
    for name, a, b, op in (("permuted > naive", "permuted", "naive", lambda x, y: x > y),
                           ("LTH >= permuted", "lth", "permuted", lambda x, y: x >= y)):
        claim = _claim(name, f"mean over seeds of {a} − {b} (pp) > 0", _pair_cells(by_seed, a, b))
        claim.paper_held, claim.paper_cells = _paper_held(paper, a, b, op)
        out.append(claim)
    claim = _claim("permuted − naive grows with sparsity",
                   "(permuted − naive) at the highest sparsity minus at the lowest (pp) > 0", _gap_cells(by_seed))
    claim.paper_held, claim.paper_cells = _paper_gap_grows(paper)
    out.append(claim)
    out.append(_claim("matched barrier shrinks with width",
                      "matched loss barrier at the narrowest width minus at the widest > 0", _barrier_cells(barriers)))
    return out


# ---------------------------------------------------------------- the whole card


def scorecard(runs: pd.DataFrame, diversity: pd.DataFrame | None = None, early: pd.DataFrame | None = None,
              barriers: pd.DataFrame | None = None, sigma: float = 2.0, metrics=("test_acc",)) -> Scorecard:
    """The scorecard of an experiment's tidy tables; ``metrics``: the accuracies it reports (test_acc, test_top5)."""
    metrics = tuple(metrics)
    runs = tidy.prepare(runs, ["dataset", "model", "branch"], "the scorecard")
    for col in ("width", "sparsity", "k"):
        if col not in runs.columns:
            runs[col] = np.nan
    rows, scope = accuracy_rows(runs, sigma, metrics)
    if early is not None:
        early = tidy.prepare(early, ["dataset", "model", "width", "sparsity", "k", "branch"], "the scorecard (Table 15)")
        more, pairs = early_rows(early, sigma, metrics)
        rows, scope = rows + more, scope | pairs
    if diversity is not None:
        diversity = tidy.prepare(diversity, ["dataset", "model", "width", "sparsity", "group", "n", "member_acc_mean"],
                                 "the scorecard (Table 1)")
        more, pairs = diversity_rows(diversity, sigma)
        rows, scope = rows + more, scope | pairs
    if barriers is not None:
        barriers = tidy.normalise(barriers)
    columns = list(COLUMNS)
    if any(not series._blank(r.get("method")) for r in rows):  # several matching methods: a column of their own
        columns.insert(columns.index("match_epoch") + 1, "method")
    cells = pd.DataFrame(rows, columns=columns)
    labels = sorted(f"{names.dataset(d)} {names.model(m)}" for d, m in scope)
    return Scorecard(cells, claims(runs, barriers, scope), sigma, labels, _other_series(runs, early))


def _other_series(runs: pd.DataFrame, early: pd.DataFrame | None) -> list[str]:
    """The matchings (method, epoch of B) of our runs outside the paper's setting, in words."""
    out = []
    for table, epoch in ((runs, True), (early, False)):
        if table is None or "branch" not in table.columns:
            continue
        table = series.blank_independent(table)
        other = table[~series.is_paper(table, epoch)]
        for _, r in other.iterrows():
            out.append(series.matching_label(r.get("method"), r.get("match_epoch") if epoch else None))
    return list(dict.fromkeys(x for x in out if x))


# ---------------------------------------------------------------- markdown


def _num(v, digits: int = 2) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return ""
    v = float(v)
    return f"{0.0 if abs(v) < 0.5 * 10 ** -digits else v:+.{digits}f}"


def _pm(mean, std, n, digits: int) -> str:
    if mean is None or (isinstance(mean, float) and not np.isfinite(mean)):
        return tidy.DIVERGED
    s = "" if std is None or not np.isfinite(std) else f" ± {float(std):.{digits}f}"
    return f"{float(mean):.{digits}f}{s} (n={int(n)})"


def _finite(v) -> bool:
    try:
        return v is not None and math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def _cell_label(r) -> list[str]:
    k = f"{float(r['k']):g}" if _finite(r["k"]) else ""
    e = f"{float(r['match_epoch']):g}" if _finite(r["match_epoch"]) else ""
    s = names.sparsity(r["sparsity"]) if _finite(r["sparsity"]) else ""
    table = f"{int(float(r['table']))}" if _finite(r["table"]) else ""
    method = r.get("method")  # the column exists only when the experiment lists several matching methods
    branch = series.label(r["branch"], method) if not series._blank(method) else names.branch(r["branch"])
    return [table, f"{names.dataset(r['dataset'])} {names.model(r['model'])}", names.width(r["width"]), s, k,
            branch, e, r["metric"]]


def _cell_words(r) -> str:
    """'MNIST-1D MLP ×1 · S = 90% · k = 4 · Naive · test_acc' for a footnote."""
    _, setting, width, sparsity, k, branch, epoch, metric = _cell_label(r)
    return " · ".join(x for x in (f"{setting} {width}", f"S = {sparsity}" if sparsity else "", f"k = {k}" if k else "",
                                  branch, f"matched at epoch {epoch}" if epoch else "", metric) if x)


def _claim_key(row: dict) -> list[str]:
    """A claim cell's label: setting, then whichever of width / sparsity / k / mode / split it has."""
    out = [f"{names.dataset(row['dataset'])} {names.model(row['model'])}" if "dataset" in row else ""]
    for key, show in (("width", lambda v: v if isinstance(v, str) else names.width(v)),
                      ("sparsity", lambda v: v if isinstance(v, str) else names.sparsity(v)),
                      ("k", lambda v: f"k = {float(v):g}"), ("mode", names.mode), ("split", str)):
        if key in row and row[key] is not None and not (isinstance(row[key], float) and math.isnan(row[key])):
            out.append(str(show(row[key])))
    return [" · ".join(x for x in out if x)]


def claims_markdown(claims: list) -> list[str]:
    """The claims table (significant / not significant / too few seeds) and each claim's cells."""
    lines = [f"Each claim is tested per cell with a {CLAIM_TEST} (H1: the difference below is > 0, "
             f"α = {CLAIM_ALPHA:g}); a cell with fewer than {MIN_PAIRS} seed pairs has too few seeds to test. "
             "\"Mean in the claimed direction\" only compares means; the paper publishes means, not seeds, so that is "
             "all its column can say.", ""]
    rows = [[c.name, c.hypothesis, str(c.significant), str(c.not_significant), str(c.too_few),
             f"{c.held} of {c.cells}", "" if c.paper_cells in (None, 0) else f"{c.paper_held} of {c.paper_cells}"]
            for c in claims]
    lines += [markdown_table(["claim", "difference tested", "significant", "not significant", "too few seeds",
                              "mean in the claimed direction (ours)", "same, paper's means"], rows), ""]
    for c in claims:
        if not c.rows:
            continue
        body = []
        for r in c.rows:
            p = "" if not _finite(r["p"]) else f"{r['p']:.3g}"
            diverged = f" ({r['nonfinite']} {tidy.label(tidy.NONFINITE_STATUS)}, left out)" if r["nonfinite"] else ""
            body.append([*_claim_key(r), str(r["n"]) + diverged,
                         "" if not _finite(r["mean"]) else _num(r["mean"], 2) +
                         ("" if not _finite(r["std"]) else f" ± {r['std']:.2f}"), p, r["result"]])
        lines += [f"### {c.name}, per cell", "",
                  markdown_table(["cell", "seed pairs", "difference (mean ± std)", "p (one-sided)", "result"], body), ""]
    return lines


def _series_note(card: "Scorecard") -> list[str]:
    """What the card compares when the experiment adds matching methods or epochs of B beside the paper's."""
    if not card.other_series:
        return []
    return [f"The paper's cells are compared only with our runs in the paper's setting ({series.PAPER_METHOD} "
            "matching of B at the end of its training); the other matching series (" + "; ".join(card.other_series)
            + ") have no published reference: they are listed as no_reference and stay out of the claims.", ""]


def to_markdown(card: Scorecard) -> str:
    lines = ["# Reproduction scorecard", "", card.headline(), ""]
    lines += [f"Verdict: our mean vs the paper's (Adnan et al., ICML 2025), `within` when |ours − paper| <= "
              f"{card.sigma:g}·sqrt(s_ours²/n_ours + s_paper²/n_paper), stds floored at 0.1 pp (single runs); "
              "accuracies in %, disagreement a fraction, KL and JS in nats. `diverged`: we ran the cell but none of "
              "its values is finite. " + tidy.FLAG_RULE, ""]
    lines += _series_note(card)
    lines += ["## The paper's claims, on our numbers", ""]
    lines += claims_markdown(card.claims)
    head = ["table", "setting", "width", "sparsity", "k", "branch", "match epoch", "metric"]
    ran = card.cells[card.cells["verdict"] != "not_run"]
    lines += ["## Our cells", ""]
    notes: list[str] = []
    if ran.empty:
        lines += ["No cells.", ""]
    else:
        body = []
        for _, r in ran.iterrows():
            d = 4 if r["unit"] == "" else 2
            ours = _pm(r["ours_mean"], r["ours_std"], r["ours_n"], d)
            if isinstance(r["flags"], str) and r["flags"]:
                notes.append(f"{tidy.FLAG_MARK}{len(notes) + 1} {_cell_words(r)}: {r['flags']}.")
                ours += f" {tidy.FLAG_MARK}{len(notes)}"
            body.append([*_cell_label(r), ours,
                         "no reference" if not _finite(r["paper_mean"]) else
                         _pm(r["paper_mean"], r["paper_std"], r["paper_n"], d),
                         _num(r["diff"], d), _num(r["threshold"], d).lstrip("+"), r["verdict"]])
        lines += [markdown_table([*head, "ours", "paper", "diff", "±", "verdict"], body), ""]
        for note in notes:
            lines += [note, ""]
    missing = card.cells[card.cells["verdict"] == "not_run"]
    lines += ["## Published cells not run", ""]
    if missing.empty:
        lines += ["None: every published cell of these settings was run." if card.published else
                  "No published cells for these settings.", ""]
    else:
        body = [[*_cell_label(r), _pm(r["paper_mean"], r["paper_std"], r["paper_n"], 4 if r["unit"] == "" else 2)]
                for _, r in missing.iterrows()]
        lines += [markdown_table([*head, "paper"], body), ""]
    return "\n".join(lines)


__all__ = ["Claim", "Scorecard", "scorecard", "to_markdown", "verdict", "paired_test", "claims_markdown", "COLUMNS",
           "VERDICTS", "FLOOR_PP", "CLAIM_ALPHA", "CLAIM_TEST", "MIN_PAIRS"]
