"""``sparsebasin collect``: gather result files into one tidy CSV.

``.json`` inputs (result, ensemble, barriers, match summary) are flattened
with their tags as columns; ``.csv`` inputs are concatenated. The CSV's
provenance goes to the sidecar ``<out>.provenance.json``.
"""

from __future__ import annotations

import argparse

from .. import provenance
from ..analysis import outputs, tidy
from .common import StepPaths, csv_outputs, parse_tags


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--inputs", nargs="+", required=True, metavar="FILE", help="result .json or .csv files")
    p.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE",
                   help="a column set on every row (repeatable), e.g. --tag experiment=NAME: runs are shared between "
                        "experiments, so the experiment is the collect's, not the run's")
    p.add_argument("--out", required=True, metavar="CSV")


def run(args: argparse.Namespace) -> None:
    table = tidy.collect(args.inputs, tags=parse_tags(args.tag))
    prov = provenance.collect(config={"step": "collect", "inputs": list(args.inputs), "rows": len(table)})
    outputs.write_csv(args.out, table, prov)


def paths(args: argparse.Namespace) -> StepPaths:
    return StepPaths(inputs=[("--inputs", p) for p in args.inputs], outputs=csv_outputs("--out", args.out),
                     distinct=[("--inputs", args.inputs)])
