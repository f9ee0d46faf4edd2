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
    from ..plan.config import ConfigError, check, read_config_text
    from ..plan.table import Plan

    repo = Path(__file__).resolve().parents[3]
    files = files or ["config.yaml"]
    config: dict = {}
    try:
        for f in files:
            if not Path(f).is_file():
                raise UserError(f"{f} does not exist; pass a workflow config with --configfile")
            try:
                loaded = yaml.safe_load(read_config_text(f))
            except yaml.YAMLError as exc:
                mark = getattr(exc, "problem_mark", None)
                where = f" at line {mark.line + 1}" if mark is not None else ""
                raise UserError(f"{f} is not valid YAML{where}; fix it and rerun") from None
            if not isinstance(loaded, (dict, type(None))):
                raise UserError(f"{f} holds a {type(loaded).__name__}, not a mapping of config keys; fix it and rerun")
            config = _merge(config, loaded or {})
        return Plan(check(config, repo / "workflow" / "schemas" / "config.schema.yaml", files))
    except ConfigError as exc:
        raise UserError(f"config: {exc}") from None


def run(args: argparse.Namespace) -> None:
    from ..errors import UserError
    from ..plan.reports import index_rows

    plan = load_plan(args.configfile)
    want = {}
    for w in args.where:
        if "=" not in w:
            raise UserError(f"--where {w!r} must look like TAG=VALUE")
        k, v = w.split("=", 1)
        want[k] = v
    rows = [r for r in index_rows(plan, args.experiment) if (args.kind is None or r["kind"] == args.kind)
            and all(str(r.get(k)) == v for k, v in want.items())]
    if args.targets:
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
