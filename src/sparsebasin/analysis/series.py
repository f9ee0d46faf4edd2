"""Which runs are one series: averaged together in every table, figure, summary and scorecard.

A sparse run's series is its branch. A run whose result depends on the
matching (a branch whose record takes pi(m_A): ``permuted``) is also keyed by
the matching's tags, so two matchings are never averaged together:

- ``method`` (activation | weight): the plan tags it only when an experiment
  lists several matching methods; where the runs carry it, it is a key;
- ``match_epoch`` (the epoch of B the permutation was found at): every
  permuted run carries it; it is a key when the permuted runs come from more
  than one epoch (``match_epochs: [e1, T]``).

Runs that do not depend on the matching (lth, naive, random, signs, dense,
IMP) stay one series whatever these tags say: the tags are blanked on them.

The paper's setting (the scorecard compares only it with the published
numbers; the other series are ``no_reference``): activation matching (or no
``method`` tag) of B at the end of its training. That epoch is the run's own
``k + epochs`` (a sparse run trains from k to T, and result.json's ``epochs``
counts the epochs it trained); where a table lacks ``epochs``, the latest
matching epoch among the permuted runs of the same dataset, model and width
(an early variant is always earlier than T). A run without ``match_epoch`` is
the paper's setting (tables from before the tag).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .. import branches
from . import names
from .tidy import _blank  # an empty tag (None, NaN, "", "nan"): one rule for the tidy tables and the series

TAGS = ("method", "match_epoch")  # the matching's tags, in the order a series label gives them
PAPER_METHOD = "activation"  # the paper matches activations (its Eq. 1); config match.method's default
METHOD_ORDER = ("activation", "weight")
SETTING = ("dataset", "model", "width")


def depends_on_matching(branch) -> bool:
    """Whether a run of ``branch`` takes the matching's permutation (its record's mask is pi(m_A))."""
    record = branches.BY_NAME.get(str(branch))
    return record is not None and record.needs_permutation


def dependent(runs: pd.DataFrame) -> pd.Series:
    """Rows whose result depends on the matching."""
    if "branch" not in runs.columns:
        return pd.Series(False, index=runs.index)
    return runs["branch"].map(depends_on_matching).astype(bool)


def blank_independent(runs: pd.DataFrame) -> pd.DataFrame:
    """A copy with the matching's tags blanked on the runs that do not depend on it (one series each)."""
    present = [t for t in TAGS if t in runs.columns]
    if not present:
        return runs
    out = runs.copy()
    off = ~dependent(out)
    for tag in present:
        if off.any():
            out[tag] = out[tag].where(~off, np.nan if tag == "match_epoch" else None)
    return out


def keys(runs: pd.DataFrame) -> list[str]:
    """The tags that split this table's matching-dependent runs into several series (empty: one series)."""
    dep = runs[dependent(runs)]
    out = []
    if "method" in runs.columns and dep["method"].map(lambda v: not _blank(v)).any():
        out.append("method")
    if "match_epoch" in runs.columns and dep["match_epoch"].nunique(dropna=False) > 1:
        out.append("match_epoch")
    return out


def ident(branch, method=None, match_epoch=None) -> str:
    """A series' id, used as a column name where series sit side by side: ``permuted``,
    ``permuted|weight``, ``permuted|weight|e5``, ``permuted|e5``."""
    parts = [str(branch)]
    if not _blank(method):
        parts.append(str(method))
    if not _blank(match_epoch):
        parts.append(f"e{float(match_epoch):g}")
    return "|".join(parts)


def assign(runs: pd.DataFrame, series_keys: list[str] | None = None) -> pd.DataFrame:
    """A copy with a ``series`` column (``ident``), the tags blanked where they do not apply."""
    runs = blank_independent(runs)
    series_keys = keys(runs) if series_keys is None else series_keys
    method = runs["method"] if "method" in series_keys else pd.Series(None, index=runs.index, dtype=object)
    epoch = runs["match_epoch"] if "match_epoch" in series_keys else pd.Series(np.nan, index=runs.index)
    return runs.assign(series=[ident(b, m, e) for b, m, e in zip(runs["branch"], method, epoch)])


def parts(series_id: str) -> dict:
    """``ident``'s inverse: {"branch", "method", "match_epoch"} (None where absent)."""
    pieces = str(series_id).split("|")
    out = {"branch": pieces[0], "method": None, "match_epoch": None}
    for p in pieces[1:]:
        if p.startswith("e") and _is_number(p[1:]):
            out["match_epoch"] = float(p[1:])
        else:
            out["method"] = p
    return out


def method_label(method) -> str:
    return names.method(method)


def label(branch, method=None, match_epoch=None) -> str:
    """'Permuted', 'Permuted · weight matching', 'Permuted · B at epoch 5', or both."""
    extra = []
    if not _blank(method):
        extra.append(names.method(method))
    if not _blank(match_epoch):
        extra.append(f"B at epoch {float(match_epoch):g}")
    return " · ".join([names.branch(branch), ", ".join(extra)] if extra else [names.branch(branch)])


def label_of(series_id: str) -> str:
    p = parts(series_id)
    return label(p["branch"], p["method"], p["match_epoch"])


def matching_label(method=None, match_epoch=None) -> str:
    """The matching alone: 'weight matching, B at epoch 5' ('' when neither)."""
    extra = []
    if not _blank(method):
        extra.append(names.method(method))
    if not _blank(match_epoch):
        extra.append(f"B at epoch {float(match_epoch):g}")
    return ", ".join(extra)


def is_matching_label(text: str) -> bool:
    """Whether ``text`` is what ``matching_label`` writes (a legend entry's tail: 'weight matching, B at epoch 5')."""
    return all(p.endswith(" matching") or p.startswith("B at epoch ") for p in str(text).split(", "))


def order(ids) -> list[str]:
    """Series in display order: the branches' table order, then method (activation, weight, ...), then epoch."""
    branch_rank = {b: i for i, b in enumerate(names.BRANCHES)}

    def key(s):
        p = parts(s)
        m = p["method"]
        return (branch_rank.get(p["branch"], len(branch_rank)), p["branch"],
                METHOD_ORDER.index(m) if m in METHOD_ORDER else len(METHOD_ORDER), m or "",
                -math.inf if p["match_epoch"] is None else p["match_epoch"])

    return sorted(dict.fromkeys(map(str, ids)), key=key)


def method_rank(method) -> tuple:
    """Sort key of a matching method: none, then activation, weight, then any other by name."""
    if _blank(method):
        return (-1, "")
    return (METHOD_ORDER.index(str(method)) if str(method) in METHOD_ORDER else len(METHOD_ORDER), str(method))


def order_methods(methods) -> list[str]:
    return sorted({str(m) for m in methods if not _blank(m)}, key=method_rank)


def paper_epoch(runs: pd.DataFrame) -> pd.Series:
    """Per row, the epoch of B the paper matches at (T): ``k + epochs`` where both are known, else the latest
    ``match_epoch`` of the matching-dependent runs of the same dataset, model and width (NaN if none)."""
    out = pd.Series(np.nan, index=runs.index, dtype=float)
    if "match_epoch" not in runs.columns:
        return out
    dep = dependent(runs)
    epoch = pd.to_numeric(runs["match_epoch"], errors="coerce")
    by = [c for c in SETTING if c in runs.columns]
    if by:
        latest = epoch.where(dep).groupby([runs[c] for c in by], dropna=False).transform("max")
    else:
        latest = pd.Series(epoch.where(dep).max(), index=runs.index)
    out = latest.astype(float)
    if "epochs" in runs.columns and "k" in runs.columns:
        own = pd.to_numeric(runs["k"], errors="coerce") + pd.to_numeric(runs["epochs"], errors="coerce")
        out = own.where(np.isfinite(own), out)
    return out


def is_paper(runs: pd.DataFrame, epoch: bool = True) -> pd.Series:
    """Rows in the paper's setting: every run that does not depend on the matching, and the matching-dependent
    runs with activation matching (or no method tag) of B at T (``epoch``: also require the epoch; off for the
    early-matching study, whose axis the epoch is)."""
    dep = dependent(runs)
    ok = pd.Series(True, index=runs.index)
    if "method" in runs.columns:
        ok &= runs["method"].map(lambda v: _blank(v) or str(v) == PAPER_METHOD)
    if epoch and "match_epoch" in runs.columns:
        e = pd.to_numeric(runs["match_epoch"], errors="coerce")
        ok &= e.isna() | np.isclose(e, paper_epoch(runs), rtol=0, atol=1e-9)
    return ~dep | ok


def paper_runs(runs: pd.DataFrame, epoch: bool = True) -> pd.DataFrame:
    """The runs of the paper's setting (``is_paper``), as one series per branch."""
    return runs[is_paper(runs, epoch)]


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False
