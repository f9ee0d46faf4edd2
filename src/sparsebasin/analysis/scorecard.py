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

Published cells of the datasets and models we ran that we did not run are
listed with verdict ``not_run``, so a partial run shows what is missing.
Table 1 does not state its rewind point, so its cells match ours at any k.

The claims, checked on our cell means (and, where the paper has the numbers,
on the paper's):

- permuted > naive, and LTH >= permuted, per (dataset, model, width, sparsity, k);
- the permuted − naive gap grows with sparsity: per (dataset, model, width, k)
  with two or more sparsities, the gap at the highest sparsity exceeds the gap
  at the lowest;
- the matched barrier shrinks with width: per (dataset, model, mode, split)
  with two or more widths, the mean loss barrier after matching at the widest
  width is below the one at the narrowest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .. import reference
from . import names, tidy
from .tables import ACCURACY_METRICS, markdown_table

FLOOR_PP = 0.1
SPARSE = ("lth", "naive", "permuted")
DIVERSITY_METRICS = ("member_acc", "ensemble_acc", "disagreement", "kl", "js")
VERDICTS = ("within", "above", "below", "no_reference", "not_run")
COLUMNS = ("section", "table", "dataset", "model", "width", "sparsity", "k", "branch", "match_epoch", "metric",
           "ours_mean", "ours_std", "ours_n", "paper_mean", "paper_std", "paper_n", "diff", "unit", "threshold",
           "verdict")
_ACC_KEYS = ["dataset", "model", "width", "sparsity", "k", "branch"]


@dataclass
class Claim:
    name: str
    held: int
    cells: int
    paper_held: int | None = None
    paper_cells: int | None = None

    def text(self) -> str:
        return f"{self.name} in {self.held} of {self.cells} cells"


@dataclass
class Scorecard:
    cells: pd.DataFrame  # COLUMNS, one row per cell (ours, and published ones not run)
    claims: list[Claim] = field(default_factory=list)
    sigma: float = 2.0
    scope: list[str] = field(default_factory=list)  # "dataset model" pairs we compared

    def count(self, verdict: str) -> int:
        return int((self.cells["verdict"] == verdict).sum()) if len(self.cells) else 0

    @property
    def published(self) -> int:
        return sum(self.count(v) for v in ("within", "above", "below", "not_run"))

    def headline(self) -> str:
        claim = next((c for c in self.claims if c.name == "permuted > naive"), None)
        tail = claim.text() if claim and claim.cells else "no permuted/naive cells to check"
        if not self.published:
            scope = ", ".join(self.scope) or "nothing compared"
            return f"No published reference for this experiment ({scope}); {tail}."
        return (f"{self.count('within')} of {self.published} published cells reproduced within {self.sigma:g}σ "
                f"({self.count('above')} above, {self.count('below')} below, {self.count('not_run')} not run); "
                f"{tail}.")

    def as_dict(self) -> dict:
        return {"headline": self.headline(), "sigma": self.sigma, "scope": self.scope,
                "counts": {v: self.count(v) for v in VERDICTS}, "published": self.published,
                "claims": [c.__dict__ for c in self.claims]}


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


def _aggregate(df: pd.DataFrame, keys: list[str], value: str, scale: float) -> pd.DataFrame:
    df = df.dropna(subset=[value])
    if df.empty:
        return pd.DataFrame(columns=[*keys, "ours_mean", "ours_std", "ours_n"])
    g = df.groupby(keys, dropna=False)[value]
    out = pd.DataFrame({"ours_mean": g.mean() * scale, "ours_std": g.std(ddof=1) * scale, "ours_n": g.count()})
    return out.reset_index()


def _key(row, keys) -> tuple:
    out = []
    for k in keys:
        v = row[k]
        out.append(None if v is None or (isinstance(v, float) and math.isnan(v)) else
                   round(float(v), 6) if isinstance(v, (int, float, np.number)) else str(v))
    return tuple(out)


def _compare(ours: pd.DataFrame, paper: pd.DataFrame, keys: list[str], section: str, sigma: float,
             unit: str = "pp", floor_of=None) -> list[dict]:
    """One row per cell of ours (verdict or no_reference), then the paper's cells we lack (not_run)."""
    floor_of = floor_of or (lambda metric, paper_mean: FLOOR_PP)
    index = {_key(r, keys): r for _, r in paper.iterrows()}
    seen, rows = set(), []
    for _, o in ours.iterrows():
        k = _key(o, keys)
        p = index.get(k)
        row = {c: o.get(c) for c in keys} | {"section": section, "unit": unit, "ours_mean": o["ours_mean"],
                                              "ours_std": o["ours_std"], "ours_n": int(o["ours_n"])}
        if p is None or not np.isfinite(p["mean"]):
            rows.append(row | {"verdict": "no_reference"})
            continue
        seen.add(k)
        diff = float(o["ours_mean"]) - float(p["mean"])
        n_paper = int(p["n"]) if np.isfinite(p["n"]) else 1
        threshold, v = verdict(diff, o["ours_std"], o["ours_n"], p["std"], n_paper, sigma,
                               floor_of(o["metric"], float(p["mean"])))
        rows.append(row | {"table": p["table"], "paper_mean": p["mean"], "paper_std": p["std"], "paper_n": n_paper,
                           "diff": diff, "threshold": threshold, "verdict": v})
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


def accuracy_rows(runs: pd.DataFrame, sigma: float, metrics=("test_acc",)) -> tuple[list[dict], set]:
    """Tables 5-14 from the runs table (sweep runs: lth, naive, permuted)."""
    sparse = runs[runs["branch"].isin(SPARSE) & runs["k"].notna() & runs["sparsity"].notna()]
    if sparse.empty:
        return [], set()
    pairs = set(zip(sparse["dataset"], sparse["model"]))
    ours = _long(sparse, metrics, _ACC_KEYS)
    paper = _in_scope(reference.load("accuracy"), pairs)
    paper = paper[paper["metric"].isin(metrics)]
    return _compare(ours, paper, [*_ACC_KEYS, "metric"], "accuracy", sigma), pairs


def early_rows(early: pd.DataFrame, sigma: float, metrics=("test_acc",)) -> tuple[list[dict], set]:
    """Table 15: lth and naive at k (no match_epoch), permuted per the epoch of B it was matched at."""
    early = early[early["branch"].isin(SPARSE)].copy()
    if early.empty:
        return [], set()
    if "match_epoch" not in early.columns:
        early["match_epoch"] = np.nan
    early.loc[early["branch"] != "permuted", "match_epoch"] = np.nan
    pairs = set(zip(early["dataset"], early["model"]))
    keys = [*_ACC_KEYS, "match_epoch"]
    ours = _long(early, metrics, keys)
    paper = _in_scope(reference.load("early_matching"), pairs)
    paper = paper[paper["metric"].isin(metrics)]
    return _compare(ours, paper, [*keys, "metric"], "early_matching", sigma), pairs


def _diversity_floor(metric: str, paper_mean: float) -> float:
    if metric == "disagreement":
        return FLOOR_PP / 100
    if metric in ("kl", "js"):
        return max(0.01 * abs(paper_mean), 1e-6)
    return FLOOR_PP


def diversity_rows(ensembles: pd.DataFrame, sigma: float) -> tuple[list[dict], set]:
    """Table 1: per group, member and ensemble accuracy (pp), disagreement, KL, JS (their own units)."""
    if ensembles.empty:
        return [], set()
    # the group is the branch here (a run's own "branch" tag, when collected too, would duplicate the column)
    ens = ensembles.drop(columns="branch", errors="ignore").rename(columns={"group": "branch"}) \
        if "group" in ensembles.columns else ensembles
    pairs = set(zip(ens["dataset"], ens["model"]))
    keys = ["dataset", "model", "width", "sparsity", "branch"]
    ref = _in_scope(reference.load("diversity").rename(columns={"group": "branch"}), pairs)
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
        ours["metric"] = metric
        paper = paper.assign(metric=metric)
        rows += _compare(ours, paper, [*keys, "metric"], "diversity", sigma, unit="pp" if pct else "",
                         floor_of=_diversity_floor)
    return rows, pairs


# ---------------------------------------------------------------- claims


def _means(runs: pd.DataFrame, metric: str = "test_acc") -> pd.DataFrame:
    """Cell means (%) with one column per branch, index (dataset, model, width, sparsity, k)."""
    sparse = runs[runs["branch"].isin(SPARSE) & runs["k"].notna() & runs["sparsity"].notna()].dropna(subset=[metric])
    if sparse.empty:
        return pd.DataFrame()
    return (sparse.groupby(["dataset", "model", "width", "sparsity", "k", "branch"])[metric].mean() * 100).unstack("branch")


def _paper_means(metric: str = "test_acc") -> pd.DataFrame:
    ref = reference.load("accuracy")
    ref = ref[ref["metric"] == metric]
    return ref.set_index(["dataset", "model", "width", "sparsity", "k", "branch"])["mean"].unstack("branch")


def _pairwise(table: pd.DataFrame, a: str, b: str, op) -> tuple[int, int]:
    if table.empty or a not in table.columns or b not in table.columns:
        return 0, 0
    both = table[[a, b]].dropna()
    return int(op(both[a], both[b]).sum()), len(both)


def _gap_grows(table: pd.DataFrame) -> tuple[int, int]:
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


def _barrier_shrinks(barriers: pd.DataFrame | None) -> tuple[int, int]:
    if barriers is None or barriers.empty or "loss_barrier" not in barriers.columns:
        return 0, 0
    matched = barriers[barriers["permuted"] == True]  # noqa: E712 (a boolean column)
    held = cells = 0
    for _, part in matched.groupby(["dataset", "model", "mode", "split"]):
        by_width = part.groupby("width")["loss_barrier"].mean().sort_index()
        if len(by_width) < 2:
            continue
        cells += 1
        held += int(by_width.iloc[-1] < by_width.iloc[0])
    return held, cells


def claims(runs: pd.DataFrame, barriers: pd.DataFrame | None = None, scope: set | None = None) -> list[Claim]:
    ours = _means(runs)
    paper = _paper_means()
    if scope:
        keep = [(d, m) in scope for d, m in zip(paper.index.get_level_values(0), paper.index.get_level_values(1))]
        paper = paper[keep]
    else:
        paper = paper.iloc[0:0]
    out = []
    for name, a, b, op in (("permuted > naive", "permuted", "naive", lambda x, y: x > y),
                           ("LTH >= permuted", "lth", "permuted", lambda x, y: x >= y)):
        held, cells = _pairwise(ours, a, b, op)
        ph, pc = _pairwise(paper, a, b, op)
        out.append(Claim(name, held, cells, ph, pc))
    held, cells = _gap_grows(ours)
    ph, pc = _gap_grows(paper)
    out.append(Claim("permuted − naive grows with sparsity", held, cells, ph, pc))
    held, cells = _barrier_shrinks(barriers)
    out.append(Claim("matched barrier shrinks with width", held, cells))
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
    cells = pd.DataFrame(rows, columns=list(COLUMNS))
    labels = sorted(f"{names.dataset(d)} {names.model(m)}" for d, m in scope)
    return Scorecard(cells, claims(runs, barriers, scope), sigma, labels)


# ---------------------------------------------------------------- markdown


def _num(v, digits: int = 2) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "–"
    v = float(v)
    return f"{0.0 if abs(v) < 0.5 * 10 ** -digits else v:+.{digits}f}"


def _pm(mean, std, n, digits: int) -> str:
    if mean is None or (isinstance(mean, float) and not np.isfinite(mean)):
        return "–"
    s = "" if std is None or not np.isfinite(std) else f" ± {float(std):.{digits}f}"
    return f"{float(mean):.{digits}f}{s} (n={int(n)})"


def _cell_label(r) -> list[str]:
    k = "" if r["k"] is None or not np.isfinite(r["k"]) else f"{r['k']:g}"
    e = "" if r["match_epoch"] is None or not np.isfinite(r["match_epoch"]) else f"{r['match_epoch']:g}"
    s = "" if r["sparsity"] is None or not np.isfinite(r["sparsity"]) else names.sparsity(r["sparsity"])
    table = "" if r["table"] is None or (isinstance(r["table"], float) and not np.isfinite(r["table"])) else \
        f"{int(float(r['table']))}"
    return [table, f"{names.dataset(r['dataset'])} {names.model(r['model'])}", names.width(r["width"]), s, k,
            names.branch(r["branch"]), e, r["metric"]]


def to_markdown(card: Scorecard) -> str:
    lines = ["# Reproduction scorecard", "", card.headline(), ""]
    lines += [f"Verdict: our mean vs the paper's (Adnan et al., ICML 2025), `within` when |ours − paper| <= "
              f"{card.sigma:g}·sqrt(s_ours²/n_ours + s_paper²/n_paper), stds floored at 0.1 pp (single runs); "
              "accuracies in %, disagreement a fraction, KL and JS in nats.", ""]
    lines += ["## The paper's claims, on our numbers", ""]
    rows = [[c.name, f"{c.held} of {c.cells}",
             "–" if c.paper_cells in (None, 0) else f"{c.paper_held} of {c.paper_cells}"] for c in card.claims]
    lines += [markdown_table(["claim", "held (ours)", "held (paper)"], rows), ""]
    head = ["table", "setting", "width", "sparsity", "k", "branch", "match epoch", "metric"]
    ran = card.cells[card.cells["verdict"] != "not_run"]
    lines += ["## Our cells", ""]
    if ran.empty:
        lines += ["No cells.", ""]
    else:
        body = []
        for _, r in ran.iterrows():
            d = 4 if r["unit"] == "" else 2
            body.append([*_cell_label(r), _pm(r["ours_mean"], r["ours_std"], r["ours_n"], d),
                         "–" if r["verdict"] == "no_reference" else _pm(r["paper_mean"], r["paper_std"], r["paper_n"], d),
                         _num(r["diff"], d), _num(r["threshold"], d).lstrip("+"), r["verdict"]])
        lines += [markdown_table([*head, "ours", "paper", "diff", "±", "verdict"], body), ""]
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


__all__ = ["Claim", "Scorecard", "scorecard", "to_markdown", "verdict", "COLUMNS", "VERDICTS", "FLOOR_PP"]
