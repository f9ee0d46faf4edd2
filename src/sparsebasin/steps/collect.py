"""``sparsebasin collect``: gather result files into one tidy CSV.

``.json`` inputs (result, ensemble, barriers, match summary) are flattened
with their tags as columns; ``.csv`` inputs are concatenated. The CSV's
provenance goes to the sidecar ``<out>.provenance.json``.
"""

from __future__ import annotations

import argparse

from .. import provenance
from ..analysis import outputs, tidy
from .common import StepPaths, csv_outputs


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--inputs", nargs="+", required=True, metavar="FILE", help="result .json or .csv files")
    p.add_argument("--out", required=True, metavar="CSV")


def run(args: argparse.Namespace) -> None:
    table = tidy.collect(args.inputs)
    prov = provenance.collect(config={"step": "collect", "inputs": list(args.inputs), "rows": len(table)})
    outputs.write_csv(args.out, table, prov)


def paths(args: argparse.Namespace) -> StepPaths:
    return StepPaths(inputs=[("--inputs", p) for p in args.inputs], outputs=csv_outputs("--out", args.out),
                     distinct=[("--inputs", args.inputs)])
