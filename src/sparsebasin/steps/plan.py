"""``sparsebasin plan``: which run is which, and where it lives (torch-free).

Runs are stored by what determines them (``sparsebasin.plan.paths``), so this
is how to find one: list the jobs of a config, filter them by tags, and print
their directories or the file to ask Snakemake for, e.g.

    snakemake --cores all $(python -m sparsebasin plan --kind sparse --where width=4 \\
        --where sparsity=0.95 --where k=4 --where branch=permuted --targets)
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import sys

from .common import StepPaths

TARGET = {"dense": "result.json", "sparse": "result.json", "match": "perm.json", "lmc": "barriers.json", "plane": "plane.csv"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--configfile", action="append", default=[], metavar="YAML",
                   help="workflow config(s), merged in order as Snakemake does (default: config.yaml)")
    p.add_argument("--experiment", default=None, help="only the jobs this experiment uses")
    p.add_argument("--kind", default=None, help="dense, prune, match, sparse, lmc, imp_barrier, plane, ensemble")
    p.add_argument("--where", action="append", default=[], metavar="TAG=VALUE",
                   help="only jobs with this tag value (repeatable), e.g. branch=permuted, sparsity=0.95")
    p.add_argument("--targets", action="store_true", help="print the file to ask Snakemake for, one per line")


def paths(args: argparse.Namespace) -> StepPaths:
    return StepPaths(inputs=[("--configfile", f) for f in args.configfile])


def _merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_plan(files: list[str]):
    from pathlib import Path

    import yaml

    from ..errors import UserError
    from ..plan.config import ConfigError, check
    from ..plan.table import Plan

    repo = Path(__file__).resolve().parents[3]
    files = files or ["config.yaml"]
    config: dict = {}
    for f in files:
        text = Path(f).read_text() if Path(f).is_file() else None
        if text is None:
            raise UserError(f"{f} does not exist; pass a workflow config with --configfile")
        config = _merge(config, yaml.safe_load(text) or {})
    try:
        return Plan(check(config, repo / "workflow" / "schemas" / "config.schema.yaml", files))
    except ConfigError as exc:
        raise UserError(f"config: {exc}") from None


LIST_TAGS = ("experiments", "studies")  # comma-separated: --where studies=lmc matches a run any lmc study uses


def _number(text: str) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def _same(have, want: str, tag: str) -> bool:
    """``have`` (a run's tag) equals ``want`` (the user's), numbers numerically (sparsity=.95 is 0.95)."""
    if have is None or have == "":
        return False
    values = str(have).split(",") if tag in LIST_TAGS else [str(have)]
    w = _number(want)
    return any(v == want or (w is not None and _number(v) is not None and math.isclose(_number(v), w, rel_tol=1e-9,
                                                                                     abs_tol=1e-12))
               for v in values)


def _listing(values) -> str:
    """Sorted for reading: numbers by value, then words."""
    values = {str(v) for v in values if v not in (None, "")}
    return ", ".join(sorted(values, key=lambda v: (_number(v) is None, _number(v) or 0.0, v)))


def select(plan, experiment: str | None, kind: str | None, where: list[str]) -> list[dict]:
    """The rows of ``plan`` that ``--experiment``/``--kind``/``--where`` select; a filter that cannot match
    anything is refused with what exists (an empty selection would make ``snakemake $(plan --targets)`` run the
    whole workflow)."""
    from ..errors import UserError
    from ..plan.reports import index_rows

    rows = index_rows(plan)
    if experiment is not None:
        names = sorted({e for r in rows for e in r["experiments"].split(",") if e})
        if experiment not in names:
            raise UserError(f"--experiment {experiment}: no such experiment in the config (experiments: "
                            f"{', '.join(names)})")
        rows = index_rows(plan, experiment)
    what = "run"
    if kind is not None:
        kinds = [k for k, jobs in plan.jobs.items() if jobs]
        if kind not in kinds:
            raise UserError(f"--kind {kind}: no such kind of job (kinds: {', '.join(kinds)})")
        rows = [r for r in rows if r["kind"] == kind]
        what = f"{kind} job"
    filters = []
    for w in where:
        if "=" not in w:
            raise UserError(f"--where {w!r} must look like TAG=VALUE")
        tag, value = (s.strip() for s in w.split("=", 1))
        present = [r for r in rows if r.get(tag) not in (None, "")]
        if not present:
            tags = sorted({t for r in rows for t, v in r.items() if v not in (None, "") and t != "path"})
            raise UserError(f"--where {w}: no {what} has a tag {tag!r} (tags: {', '.join(tags)})")
        if not any(_same(r[tag], value, tag) for r in present):
            values = {v for r in present for v in (str(r[tag]).split(",") if tag in LIST_TAGS else [r[tag]])}
            raise UserError(f"--where {w}: no {what} has {tag}={value} ({tag}: {_listing(values)})")
        filters.append((tag, value))
    picked = [r for r in rows if all(_same(r.get(t), v, t) for t, v in filters)]
    if not picked:
        asked = " ".join([f"--kind {kind}"] * (kind is not None) + [f"--where {t}={v}" for t, v in filters])
        raise UserError(f"{asked}: no {what} has all of these at once (each alone matches some); "
                        "list them without --targets to see which combinations exist")
    return picked


def run(args: argparse.Namespace) -> None:
    plan = load_plan(args.configfile)
    rows = select(plan, args.experiment, args.kind, args.where)
    try:
        _print(plan, rows, args.targets)
        sys.stdout.flush()
    except BrokenPipeError:  # `plan | head`: the reader had enough; nothing failed
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _print(plan, rows: list[dict], targets: bool) -> None:
    if targets:
        for r in rows:
            job = plan.jobs[r["kind"]][r["path"]]
            name = TARGET.get(r["kind"])
            print(f"{job.path}/{name}" if name else job.outputs[0] if job.outputs else plan.prune_outputs(job)[3])
        return
    columns = ["kind", "experiments", "studies", "dataset", "model", "width", "seed", "net", "sparsity", "k",
               "branch", "member", "match_epoch", "round", "path"]
    writer = csv.DictWriter(sys.stdout, fieldnames=columns, delimiter="\t", extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
