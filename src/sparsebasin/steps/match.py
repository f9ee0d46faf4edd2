"""``sparsebasin match``: the permutation aligning checkpoint A to checkpoint B (``symmetry.align``).

Writes the permutation artifact (``--out``) and a JSON summary (``--summary``:
per-group and mean matched correlation, method, the training sample used,
tags, provenance).
"""

from __future__ import annotations

import argparse

from .common import StepPaths, add_data_args, add_record_args, add_run_args, data_options, record_values, run_options


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--a", required=True, metavar="CKPT", help="checkpoint to permute (its model/data are recorded)")
    p.add_argument("--b", required=True, metavar="CKPT", help="checkpoint to align A to")
    add_data_args(p)
    from ..symmetry.align import MatchOptions

    add_record_args(p.add_argument_group("matching"), MatchOptions)
    add_run_args(p, seed=False, progress=False)
    o = p.add_argument_group("outputs")
    o.add_argument("--out", required=True, metavar="PERM.pt")
    o.add_argument("--summary", required=True, metavar="PERM.json")


def run(args: argparse.Namespace) -> None:
    from ..distributed import writer
    from ..symmetry.align import MatchOptions, match_checkpoints

    run = run_options(args)
    opts = MatchOptions(**record_values(MatchOptions, args))
    summary = match_checkpoints(args.a, args.b, data=data_options(args), opts=opts, out=args.out,
                                summary_out=args.summary, device=run.device, tags=run.tags)
    mc = summary["mean_correlation"]
    if writer():  # data-parallel: every rank has the same summary
        print(f"matched {args.a} -> {args.b} ({args.method}, {summary['batches']} batches): "
              f"mean correlation {mc if mc is None else round(mc, 4)} in {summary['seconds']:.1f}s")


def paths(args: argparse.Namespace) -> StepPaths:
    return StepPaths(inputs=[("--a", args.a), ("--b", args.b)],
                     outputs=[("--out", args.out), ("--summary", args.summary)])
