"""``sparsebasin figure --kind K``: draw one paper figure from tidy tables.

Kinds (``sparsebasin.analysis.plots``) and the table each reads:

- ``accuracy_vs_rewind`` (Figs 5-8, 11), ``accuracy_vs_sparsity`` (Figs 9, 10):
  the runs table; ``--table2`` optionally adds a second runs table (e.g. the
  dense and IMP runs collected separately). ``--metric test_acc|test_top5``.
- ``lmc_width`` (Fig 3): LMC curves; ``--metric loss|error`` (default loss).
- ``imp_barrier`` (Fig 4a): IMP-round curves; ``--metric`` default error.
- ``plane`` (Fig 4b): the plane grid; ``--metric`` default error (0-1 loss).
- ``baselines``: the runs table; accuracy vs sparsity of every sparse branch
  and matching method, one panel per setting and k (``--ks``, default every k
  of the runs); ``--matches`` (the matches table) adds the time each method
  took to find the permutation.

Writes ``--out`` (PDF) and ``--png``; provenance is embedded in both files.
"""

from __future__ import annotations

import argparse

import pandas as pd

from .. import provenance
from ..analysis import outputs, plots, tidy
from ..errors import UserError
from .common import EPOCH_LIST, StepPaths

DEFAULT_METRIC = {
    "accuracy_vs_rewind": "test_acc",
    "accuracy_vs_sparsity": "test_acc",
    "lmc_width": "loss",
    "imp_barrier": "error",
    "plane": "error",
    "baselines": "test_acc",
}
ACCURACY_KINDS = ("accuracy_vs_rewind", "accuracy_vs_sparsity")
PAPER_KINDS = ACCURACY_KINDS  # the paper publishes these figures' values (--paper-reference)
KS_KINDS = ("accuracy_vs_sparsity", "baselines")
DEFAULT_KS = [10, 25, 50, 100]  # accuracy_vs_sparsity's panels unless --ks (Figs 9, 10)
SPLIT_KINDS = ("lmc_width", "imp_barrier", "plane")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kind", required=True, choices=tuple(plots.KINDS))
    p.add_argument("--table", required=True, metavar="CSV", help="tidy table from collect (or interpolate/plane)")
    p.add_argument("--table2", default=None, metavar="CSV", help="accuracy figures only: more runs (e.g. dense/IMP) to add")
    p.add_argument("--matches", default=None, metavar="CSV",
                   help="baselines: the matches table (collect over match summaries): time to find each permutation")
    p.add_argument("--metric", default=None, help="test_acc|test_top5 (accuracy figures), loss|error (others)")
    p.add_argument("--split", default="test", help="lmc_width/imp_barrier/plane: data split to plot (default test; '' = no filter)")
    p.add_argument("--ks", type=EPOCH_LIST, default=None,
                   help="accuracy_vs_sparsity, baselines: rewind points, one panel each (default 10,25,50,100 for "
                        "accuracy_vs_sparsity, every k of the runs for baselines)")
    p.add_argument("--paper-reference", action="store_true",
                   help="accuracy figures: draw the paper's published values (grey, dashed, 'paper') under ours")
    p.add_argument("--out", required=True, metavar="PDF")
    p.add_argument("--png", default=None, metavar="PNG")


def run(args: argparse.Namespace) -> None:
    table = tidy.read_table(args.table)
    if args.table2 is not None:
        if args.kind not in ACCURACY_KINDS + ("baselines",):
            raise UserError(f"--table2 is only used by {', '.join(ACCURACY_KINDS)}, baselines; drop it for --kind "
                            f"{args.kind}")
        table = tidy.normalise(pd.concat([table, tidy.read_table(args.table2)], ignore_index=True, sort=False),
                               f"{args.table} + {args.table2}")
    metric = args.metric or DEFAULT_METRIC[args.kind]
    kwargs: dict = {"metric": metric}
    if args.kind in KS_KINDS:
        ks = args.ks if args.ks is not None else (DEFAULT_KS if args.kind == "accuracy_vs_sparsity" else None)
        if ks is not None and not ks:
            raise UserError("--ks must list at least one rewind point, e.g. 10,25,50,100")
        kwargs["ks"] = ks
    if args.kind in SPLIT_KINDS:
        kwargs["split"] = args.split or None
    if args.paper_reference and args.kind not in PAPER_KINDS:
        raise UserError(f"--paper-reference is for {', '.join(PAPER_KINDS)}; drop it for --kind {args.kind}")
    extra = {}
    if args.matches is not None:
        if args.kind != "baselines":
            raise UserError(f"--matches is only used by --kind baselines; drop it for --kind {args.kind}")
        extra["matches"] = tidy.read_table(args.matches)
        kwargs["matches"] = args.matches
    if args.paper_reference:
        from .. import reference

        extra["reference"] = reference.load("accuracy")
        kwargs["paper_reference"] = reference.SOURCE
    fig = plots.KINDS[args.kind](table, **{k: v for k, v in kwargs.items() if k not in ("paper_reference", "matches")},
                                 **extra)
    config = {"step": "figure", "kind": args.kind, "table": args.table, "table2": args.table2, **kwargs}
    outputs.save_figure(fig, args.out, args.png, provenance.collect(config=config))


def paths(args: argparse.Namespace) -> StepPaths:
    return StepPaths(inputs=[("--table", args.table), ("--table2", args.table2), ("--matches", args.matches)],
                     outputs=[("--out", args.out), ("--png", args.png)])
