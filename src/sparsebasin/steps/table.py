"""``sparsebasin table --kind K``: one paper table as tidy CSV and Markdown.

Kinds (``sparsebasin.analysis.tables``): ``accuracy`` (Tables 5-14, runs
table), ``diversity`` (Table 1, ensembles table), ``early_matching``
(Table 15, runs table with a ``match_epoch`` tag), ``lmc`` (barriers per
width, barriers or curves table), ``baselines`` (every sparse branch and
matching method against naive, runs table; ``--matches`` adds the time to
find the permutation). Provenance: ``<out-csv>.provenance.json`` and a
comment at the top of the Markdown file.
"""

from __future__ import annotations

import argparse

from .. import provenance
from ..analysis import outputs, tables, tidy
from ..errors import UserError
from .common import NONNEG_INT, StepPaths, csv_outputs


def _metrics(text: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in items if t not in tables.ACCURACY_METRICS]
    if bad or not items:
        raise argparse.ArgumentTypeError(f"must be a comma-separated list of {', '.join(tables.ACCURACY_METRICS)}, "
                                         f"got {text!r}")
    return items


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kind", required=True, choices=tuple(tables.KINDS))
    p.add_argument("--table", required=True, metavar="CSV", help="tidy table from collect")
    p.add_argument("--matches", default=None, metavar="CSV",
                   help="baselines: the matches table (collect over match summaries): time to find each permutation")
    p.add_argument("--metric", default="test_acc", choices=tables.ACCURACY_METRICS,
                   help="early_matching, baselines: which accuracy (default test_acc)")
    p.add_argument("--metrics", type=_metrics, default=None,
                   help="accuracy: comma-separated accuracies, one block each (default: --metric), e.g. "
                        "test_acc,test_top5 for Table 10")
    p.add_argument("--k", type=NONNEG_INT, default=20, help="early_matching: rewind point of the permuted runs (default 20)")
    p.add_argument("--out-csv", required=True, metavar="CSV")
    p.add_argument("--out-md", required=True, metavar="MD")


def run(args: argparse.Namespace) -> None:
    table = tidy.read_table(args.table)
    kwargs: dict = {}
    if args.kind == "accuracy":
        kwargs["metrics"] = args.metrics or [args.metric]
    if args.kind in ("early_matching", "baselines"):
        kwargs["metric"] = args.metric
    if args.kind == "early_matching":
        kwargs["k"] = args.k
    extra, recorded = {}, {}
    if args.matches is not None:
        if args.kind != "baselines":
            raise UserError(f"--matches is only used by --kind baselines; drop it for --kind {args.kind}")
        extra["matches"], recorded["matches"] = tidy.read_table(args.matches), args.matches
    frame, markdown = tables.KINDS[args.kind](table, **kwargs, **extra)
    prov = provenance.collect(config={"step": "table", "kind": args.kind, "table": args.table, **kwargs, **recorded})
    outputs.write_csv(args.out_csv, frame, prov)
    outputs.write_markdown(args.out_md, markdown, prov)


def paths(args: argparse.Namespace) -> StepPaths:
    return StepPaths(inputs=[("--table", args.table), ("--matches", args.matches)],
                     outputs=[*csv_outputs("--out-csv", args.out_csv), ("--out-md", args.out_md)])
