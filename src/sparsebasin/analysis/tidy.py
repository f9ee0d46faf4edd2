"""Tidy tables: the columns each analysis expects, how they are built and read.

Every result file carries its workflow wildcards as tags (``--tag K=V``), and
``collect`` turns result files into one tidy CSV with those tags as columns.
The analyses never look at paths. Expected columns (extra columns are kept and
ignored; a missing required column is a ``UserError`` naming the table):

runs (collect over ``result.json``)
    ``experiment, dataset, model, width, seed, sparsity, k, branch, test_acc,
    test_top5, test_loss, density, run, health, health_reasons``. ``branch`` is one of dense, imp and
    the sparse branches of ``sparsebasin.branches`` (lth, naive, permuted, random, signs); ``sparsity`` and
    ``k`` are empty for dense runs (``k`` also for imp). Accuracies are fractions in [0, 1]. The runs
    that depend on the matching (permuted) carry ``match_epoch`` (the epoch of B at which the
    permutation was found; Table 15's axis) and, when an experiment lists several matching methods,
    ``method``; the others carry neither. Both are series keys (``series``), never averaged over.
lmc curves (concatenated ``interpolate`` CSVs)
    ``alpha, mode, permuted, split, loss, acc, error`` plus tags (``width``,
    ``seed``, ...). ``mode`` is plain, bn_reset or repair; ``error`` = 1 - acc.
imp rounds (concatenated ``interpolate`` CSVs, dense A vs each IMP round)
    the lmc curve columns plus ``round`` (1..R) and ``round_sparsity``.
barriers (collect over ``interpolate --barriers`` JSON)
    ``mode, permuted, split, loss_barrier, error_barrier`` plus tags. Any table
    with ``alpha`` is accepted instead: barriers are then computed from curves.
plane (``plane`` CSV)
    grid rows ``u, v, loss, error`` (``point`` empty) plus one row per anchor
    model with ``point`` set to ``origin``, ``p1`` or ``p2`` and its ``u, v``
    (its loss/error may be empty). An optional ``label`` column overrides the
    legend text of an anchor; an optional ``split`` column is filtered on.
ensembles (collect over ``ensemble`` JSON)
    ``group, n, member_acc_mean, member_acc_std, ensemble_acc, disagreement,
    kl, js`` plus tags (``dataset, model, width, sparsity``, ...).
matches (collect over ``match --summary`` JSON)
    ``mean_correlation, method, seconds`` (time to find the permutation), ``epoch_b`` plus tags
    (``dataset, model, width, seed``; ``match_epoch`` and ``method`` where the plan tags them).

Tag values arrive as strings; ``normalise`` converts the numeric tags and the
``permuted`` flag so that ``width == 4`` and ``sparsity == 0.9`` work.

Flagged runs and non-finite values (the read side of "every number right or
refused"). A run's ``health`` is the ``status`` of its result.json's
``health`` entry: ``ok``, ``chance`` (dead: chance accuracy) or ``exploded``
(diverged: exploded test loss); a result without the entry (written before
it existed) is ``ok``; ``health_reasons`` joins its sentences. A measured
value that came out NaN/inf is JSON null (an empty CSV cell), and the file's
``"nonfinite": {"<dotted path>": "<reason>"}`` lands on the row it belongs to
as a ``nonfinite`` column (``"<field>: <reason>"``, several joined by ``; ``).
``FLAG_RULE`` is the one rule every table, figure, scorecard and summary
follows, in the words of ``LABEL``; ``NOT_RUN`` and ``DIVERGED`` are the two
marks that must never be confused.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from ..errors import UserError
from ..io import read_json, require_file

try:  # the write side's words (sparsebasin.health, torch-free), so a flag reads the same everywhere
    from ..health import LABEL as _LABEL
except ImportError:  # pragma: no cover - until sparsebasin.health is on main: the same words, here only
    _LABEL = {"chance": "dead (chance accuracy)", "exploded": "diverged (exploded loss)",
              "nonfinite": "diverged (non-finite)"}

OK = "ok"
NONFINITE_STATUS = "nonfinite"
LABEL = dict(_LABEL)  # status -> words: "chance" -> "dead (chance accuracy)", ...
HEALTH = "health"  # run status column of the runs table
HEALTH_REASONS = "health_reasons"
NONFINITE = "nonfinite"  # per-row "field: reason" of the values that came out non-finite
NOT_RUN = "–"  # a cell nobody ran
DIVERGED = "diverged"  # a cell whose every value came out non-finite
FLAG_MARK = "†"
FLAG_RULE = ("Flagged runs (dead: chance accuracy; diverged: exploded test loss) are included in the means and "
             f"marked {FLAG_MARK}; a value that came out non-finite (NaN/inf) cannot be averaged: it is left out of "
             f"the mean and counted, and a cell with no finite value reads \"{DIVERGED}\". \"{NOT_RUN}\" means not run.")

# Tag columns that are numbers, whatever type they arrived as.
NUMERIC_COLUMNS = (
    "width", "seed", "sparsity", "k", "round", "imp_iteration", "round_sparsity", "match_epoch", "alpha", "n",
    "test_acc", "test_top5", "test_loss", "density", "loss", "acc", "error",
    "loss_barrier", "error_barrier", "mean_correlation",
    "member_acc_mean", "member_acc_std", "ensemble_acc", "disagreement", "kl", "js", "u", "v",
)
BOOLEAN_COLUMNS = ("permuted",)
# Columns put first in a collected table, in this order, when present.
KEY_ORDER = ("experiment", "dataset", "model", "width", "seed", "sparsity", "k", "branch", "group")

_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f"}


def label(status: str) -> str:
    """The words for a run status or ``nonfinite`` ("dead (chance accuracy)", ...); ``ok`` -> "ok"."""
    return LABEL.get(str(status), str(status))


def health_of(df: pd.DataFrame) -> pd.Series:
    """Each row's run status; ``ok`` where the table has no health column or the row has none."""
    if HEALTH not in df.columns:
        return pd.Series(OK, index=df.index, dtype=object)
    return df[HEALTH].map(lambda v: OK if _blank(v) else str(v))


def flagged(df: pd.DataFrame) -> pd.Series:
    """Rows of runs flagged dead or diverged (health not ok)."""
    return health_of(df) != OK


def nonfinite(values) -> np.ndarray:
    """Which of ``values`` are NaN or ±inf, as a boolean array (numbers only; missing counts as NaN)."""
    return ~np.isfinite(pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=float))


def measured(df: pd.DataFrame, value: str) -> pd.Series:
    """Rows that carry a measurement of ``value``: a number, or a value that came out non-finite.

    Curves and barriers write every value they measure, an empty cell being a
    non-finite one (the contract of interpolate/plane). A run's result.json
    never holds a non-finite value unless its health flags it, so in a runs
    table (``test_acc`` or ``health`` present) an empty cell of a healthy run
    is a metric that run does not report, not a divergence.
    """
    if value not in df.columns:
        return pd.Series(False, index=df.index)
    if "test_acc" not in df.columns and HEALTH not in df.columns:
        return pd.Series(True, index=df.index)
    empty = pd.to_numeric(df[value], errors="coerce").isna()
    return ~empty | flagged(df) | (df[NONFINITE].map(lambda v: not _blank(v)) if NONFINITE in df.columns else False)


def flag_text(counts: dict[str, int], total: int, what: str = "runs") -> str:
    """'1 of 4 runs dead (chance accuracy)', several statuses joined by '; '."""
    return "; ".join(f"{n} of {total} {what if total != 1 else what.rstrip('s')} {label(s)}"
                     for s, n in counts.items() if n)


def source_of(df: pd.DataFrame) -> str:
    return df.attrs.get("source", "the input table")


def normalise(df: pd.DataFrame, source: str | None = None) -> pd.DataFrame:
    """A copy with numeric tags as numbers (empty -> NaN) and ``permuted`` as bool."""
    src = source or source_of(df)
    out = df.copy()
    for col in NUMERIC_COLUMNS:
        if col in out.columns and not pd.api.types.is_numeric_dtype(out[col]):
            values = out[col].map(lambda v: None if _blank(v) else v)
            try:
                out[col] = pd.to_numeric(values, errors="raise").astype(float)
            except (ValueError, TypeError) as exc:
                raise UserError(f"{src}: column {col!r} must be numeric ({exc}); fix the tag or value that produced it") from exc
    for col in BOOLEAN_COLUMNS:
        if col in out.columns and out[col].dtype != bool:
            out[col] = out[col].map(lambda v, c=col: _to_bool(v, c, src))
    out.attrs["source"] = src
    return out


def prepare(df: pd.DataFrame, required: Iterable[str], what: str) -> pd.DataFrame:
    """Normalise ``df`` and check it has the columns ``what`` needs."""
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"{what} expects a pandas DataFrame, got {type(df).__name__}")
    src = source_of(df)
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise UserError(f"{src}: {what} needs column(s) {', '.join(missing)}; collect results tagged with them")
    if df.empty:
        raise UserError(f"{src}: {what} got an empty table; check that collect was given the right result files")
    return normalise(df, src)


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a collected CSV and normalise its tag columns."""
    path = require_file(path, "CSV table")
    try:
        df = pd.read_csv(path)
    except pd.errors.EmptyDataError as exc:
        raise UserError(f"{path} is empty; delete it and rerun collect") from exc
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise UserError(f"{path} is not a valid CSV ({exc}); delete it and rerun the step that produces it") from exc
    return normalise(df, str(path))


def json_rows(obj, source: str) -> list[dict]:
    """Flatten one result JSON into table rows.

    ``provenance`` is dropped; ``tags`` become columns; nested dicts become
    dotted columns (``a.b``); lists of numbers become a JSON string. If one
    top-level field is a list of records (dicts), each record becomes a row
    carrying the file's other fields and tags (e.g. barriers per mode/split).
    """
    if not isinstance(obj, dict):
        raise UserError(f"{source}: expected a JSON object at the top level; pass a result, ensemble, barriers or match summary JSON")
    tags = obj.get("tags") or {}
    if not isinstance(tags, dict):
        raise UserError(f"{source}: 'tags' must be an object of KEY: VALUE; rerun the step that wrote it")
    base: dict = {}
    record_keys = []
    health = obj.get(HEALTH)
    if isinstance(health, dict):  # {"status": ..., "reasons": [...]} -> two plain columns
        base[HEALTH] = str(health.get("status") or OK)
        reasons = health.get("reasons") or []
        base[HEALTH_REASONS] = "; ".join(map(str, reasons)) if isinstance(reasons, list) else str(reasons)
    marks = obj.get(NONFINITE) if isinstance(obj.get(NONFINITE), dict) else {}
    for key, value in obj.items():
        if key in ("provenance", "tags") or (key == HEALTH and isinstance(health, dict)) or \
                (key == NONFINITE and isinstance(value, dict)):
            continue
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            record_keys.append(key)
        else:
            _flatten_into(base, key, value)
    if len(record_keys) > 1:
        raise UserError(f"{source}: several lists of records ({', '.join(record_keys)}); collect expands at most one per file")
    clash = sorted(k for k in set(tags) & set(base) if not _same(tags[k], base[k]))
    if clash:
        raise UserError(f"{source}: tag(s) {', '.join(clash)} clash with result fields; rename the --tag")
    base.update(tags)
    records = obj[record_keys[0]] if record_keys else []
    # "nonfinite" paths: "<records key>.<i>.<field>" belongs to record i, anything else to every row
    per_row: dict[int, list[str]] = {}
    shared: list[str] = []
    for path, reason in marks.items():
        parts = str(path).split(".")
        if record_keys and len(parts) >= 3 and parts[0] == record_keys[0] and parts[1].isdigit():
            per_row.setdefault(int(parts[1]), []).append(f"{'.'.join(parts[2:])}: {reason}")
        else:
            shared.append(f"{path}: {reason}")
    if marks:
        base[NONFINITE] = "; ".join(shared) or None
    if not record_keys:
        return [base]
    rows = []
    for i, record in enumerate(records):
        flat: dict = {}
        for key, value in record.items():
            _flatten_into(flat, key, value)
        clash = sorted(k for k in set(tags) & set(flat) if not _same(tags[k], flat[k]))
        if clash:
            raise UserError(f"{source}: tag(s) {', '.join(clash)} clash with fields of {record_keys[0]!r}; rename the --tag")
        row = {**base, **flat}
        if marks:
            row[NONFINITE] = "; ".join(shared + per_row.get(i, [])) or None
        rows.append(row)
    return rows


def collect(paths: Iterable[str | Path], tags: dict | None = None) -> pd.DataFrame:
    """One tidy table from result files: JSON files flattened, CSV files concatenated.

    A ``source`` column records the file each row came from (for tracing only;
    analyses group by tags, never by source); ``tags`` are set on every row.
    """
    frames = []
    for p in map(Path, paths):
        suffix = p.suffix.lower()
        require_file(p, "result file")
        if p.name.endswith(".provenance.json"):
            raise UserError(f"{p} is a provenance sidecar, not a result; pass the result file it describes")
        if suffix == ".json":
            rows = json_rows(read_json(p), str(p))
            frame = pd.DataFrame(rows)
        elif suffix == ".csv":
            frame = read_table(p)
        else:
            raise UserError(f"{p}: collect reads .json and .csv files only; pass result files")
        frame["source"] = str(p)
        frames.append(frame)
    if not frames:
        raise UserError("collect got no input files; pass at least one --inputs file")
    frames = [f for f in frames if not f.empty] or frames[:1]
    table = pd.concat(frames, ignore_index=True, sort=False)
    for k, v in (tags or {}).items():
        table[k] = v
    if "test_acc" in table.columns or HEALTH in table.columns:  # runs: a result without "health" predates it: ok
        table[HEALTH] = health_of(table)
    first = [c for c in KEY_ORDER if c in table.columns]
    rest = [c for c in table.columns if c not in first and c != "source"]
    return normalise(table[first + rest + ["source"]], "collected table")


def _flatten_into(out: dict, key: str, value) -> None:
    if isinstance(value, dict):
        for sub, v in value.items():
            _flatten_into(out, f"{key}.{sub}", v)
    elif isinstance(value, (list, tuple)):
        out[key] = json.dumps(value)
    else:
        out[key] = value


def _same(tag, field) -> bool:
    """A tag that says what the file's own field says (``method=weight`` on a match summary whose ``method`` is
    weight) is the same column, not a clash; tags arrive as strings, so numbers compare as numbers."""
    if str(tag) == str(field):
        return True
    try:
        return float(tag) == float(field)
    except (TypeError, ValueError):
        return False


def _blank(value) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and value.strip().lower() in ("", "nan", "none", "null")


def _to_bool(value, column: str, source: str):
    if isinstance(value, bool):
        return value
    if _blank(value):
        raise UserError(f"{source}: column {column!r} has an empty value; every row needs True or False")
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise UserError(f"{source}: column {column!r} has {value!r}; expected True or False")
