"""Barriers from tidy interpolation curves, and their mean/std over seeds.

The barrier of a curve v(alpha) between end points alpha0 and alpha1 is
``max_alpha v(alpha) - [(1 - t) v(alpha0) + t v(alpha1)]`` with
``t = (alpha - alpha0) / (alpha1 - alpha0)``: the height of the curve above the
straight line joining its ends (PROTOCOL, Fig. 3). It is never below zero,
since the end points themselves lie on the line.

A curve is identified by every column that is neither alpha nor a measurement
(mode, permuted, split and all tags such as width, seed, round), so the same
code serves LMC curves and IMP-round curves.

A curve with a non-finite point (an empty CSV cell: the evaluation diverged
there, e.g. a REPAIR correction that blew up) has no barrier: it is NaN, and
the row's ``nonfinite`` column says which points, so tables and figures show
it as diverged. It is never the max over the finite rest, and never 0.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import UserError
from . import tidy

MEASURES = ("alpha", "loss", "acc", "error", "source", tidy.NONFINITE)
BARRIER_OF = {"loss": "loss_barrier", "error": "error_barrier"}


def curve_keys(curves: pd.DataFrame) -> list[str]:
    return [c for c in curves.columns if c not in MEASURES]


def barriers_from_curves(curves: pd.DataFrame) -> pd.DataFrame:
    """One row per curve: its key columns plus ``loss_barrier`` / ``error_barrier``."""
    curves = tidy.prepare(curves, ["alpha"], "computing barriers")
    metrics = [m for m in BARRIER_OF if m in curves.columns]
    if not metrics:
        raise UserError(f"{tidy.source_of(curves)}: computing barriers needs a loss or error column; pass interpolate's CSV")
    keys = curve_keys(curves)
    rows = []
    groups = curves.groupby(keys, dropna=False, sort=True) if keys else [((), curves)]
    for key, curve in groups:
        key = key if isinstance(key, tuple) else (key,)
        if curve["alpha"].duplicated().any():
            raise UserError(
                f"{tidy.source_of(curves)}: a curve has repeated alpha values for {dict(zip(keys, key))}; "
                "tag each interpolate result with its seed (and width/round) before collecting"
            )
        if len(curve) < 2:
            raise UserError(f"{tidy.source_of(curves)}: a curve has fewer than two alphas for {dict(zip(keys, key))}; rerun interpolate with --alphas >= 2")
        curve = curve.sort_values("alpha")
        row = dict(zip(keys, key))
        reasons = []
        for metric in metrics:
            values = curve[metric].to_numpy(dtype=float)
            bad = tidy.nonfinite(values)
            if bad.any():
                at = ", ".join(f"{a:g}" for a in curve["alpha"].to_numpy(dtype=float)[bad])
                reasons.append(f"{BARRIER_OF[metric]}: {metric} is non-finite at α = {at}")
                row[BARRIER_OF[metric]] = np.nan
            else:
                row[BARRIER_OF[metric]] = barrier(curve["alpha"].to_numpy(), values)
        row[tidy.NONFINITE] = "; ".join(reasons) or None
        rows.append(row)
    out = pd.DataFrame(rows)
    out.attrs["source"] = tidy.source_of(curves)
    return out


def barrier(alpha: np.ndarray, value: np.ndarray) -> float:
    """Height of ``value`` above the chord between its first and last alpha; NaN if any value is non-finite."""
    alpha = np.asarray(alpha, dtype=float)
    value = np.asarray(value, dtype=float)
    if not np.isfinite(value).all():
        return float("nan")
    t = (alpha - alpha[0]) / (alpha[-1] - alpha[0])
    chord = (1 - t) * value[0] + t * value[-1]
    return float(np.max(value - chord))


def ensure_barriers(table: pd.DataFrame) -> pd.DataFrame:
    """Barrier rows from either a barriers table or a table of curves (has ``alpha``)."""
    if "alpha" in table.columns:
        return barriers_from_curves(table)
    if not any(c in table.columns for c in BARRIER_OF.values()):
        raise UserError(
            f"{tidy.source_of(table)}: expected loss_barrier/error_barrier columns or interpolation curves (alpha, loss, error); "
            "collect interpolate's --barriers JSON or CSV"
        )
    out = tidy.normalise(table)
    present = [c for c in BARRIER_OF.values() if c in out.columns]
    bad = np.zeros(len(out), dtype=bool)
    for c in present:
        bad |= tidy.nonfinite(out[c])
    if bad.any():  # a NaN barrier without its reason (a file from before "nonfinite"): say so
        if tidy.NONFINITE not in out.columns:
            out[tidy.NONFINITE] = None
        missing = bad & out[tidy.NONFINITE].map(tidy._blank).to_numpy(dtype=bool)
        out.loc[missing, tidy.NONFINITE] = "barrier is non-finite"
    return out
