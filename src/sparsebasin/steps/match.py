"""``sparsebasin match``: the permutation aligning checkpoint A to checkpoint B (``symmetry.align``).

Writes the permutation artifact (``--out``) and a JSON summary (``--summary``:
per-group and mean matched correlation, method, the training sample used,
tags, provenance).
"""

from __future__ import annotations

import argparse

from ..symmetry.align import STATS
from ..symmetry.spec import STREAM_POINTS
from .common import NONNEG_INT, POSITIVE_INT, SEED, StepPaths, add_data_args, add_run_args, data_options, run_options


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--a", required=True, metavar="CKPT", help="checkpoint to permute (its model/data are recorded)")
    p.add_argument("--b", required=True, metavar="CKPT", help="checkpoint to align A to")
    add_data_args(p)
    from ..symmetry.matching import METHODS  # the one list of methods (torch: only this step's parser pays)

    g = p.add_argument_group("matching")
    g.add_argument("--method", choices=tuple(METHODS), default="activation",
                   help="how the permutation is found: " + "; ".join(f"{n}: {m.find.__doc__.split(':')[0]}"
                                                                     for n, m in METHODS.items()))
    g.add_argument("--stat", choices=STATS, default="correlation",
                   help="activation matching score: Pearson correlation or cross-covariance (Eq. 1)")
    g.add_argument("--batches", type=NONNEG_INT, default=20, help="training batches of activations (default 20)")
    g.add_argument("--batch-size", type=POSITIVE_INT, default=500)
    g.add_argument("--chunk", type=POSITIVE_INT, default=None,
                   help="forward at most this many examples at a time (same result, less memory)")
    g.add_argument("--sample-seed", type=SEED, default=0,
                   help="seed of the random sample of training images the statistics use (default 0)")
    g.add_argument("--stream-points", choices=STREAM_POINTS, default="stage_output",
                   help="where ResNet20's residual-stream groups are matched: stage_output (each stage's output, "
                        "REPAIR's choice; default) or authors_code (res3 at layer3.1's output, as the paper's code)")
    g.add_argument("--seed", type=SEED, default=0, help="group order of weight matching")
    g.add_argument("--max-iter", type=POSITIVE_INT, default=100, help="weight matching passes at most")
    add_run_args(p, seed=False, progress=False)
    o = p.add_argument_group("outputs")
    o.add_argument("--out", required=True, metavar="PERM.pt")
    o.add_argument("--summary", required=True, metavar="PERM.json")


def run(args: argparse.Namespace) -> None:
    from ..distributed import writer
    from ..symmetry.align import MatchOptions, match_checkpoints

    run = run_options(args)
    opts = MatchOptions(method=args.method, stat=args.stat, batches=args.batches, batch_size=args.batch_size,
                        chunk=args.chunk, sample_seed=args.sample_seed, stream_points=args.stream_points,
                        seed=args.seed, max_iter=args.max_iter)
    summary = match_checkpoints(args.a, args.b, data=data_options(args), opts=opts, out=args.out,
                                summary_out=args.summary, device=run.device, tags=run.tags)
    mc = summary["mean_correlation"]
    if writer():  # data-parallel: every rank has the same summary
        print(f"matched {args.a} -> {args.b} ({args.method}, {summary['batches']} batches): "
              f"mean correlation {mc if mc is None else round(mc, 4)} in {summary['seconds']:.1f}s")


def paths(args: argparse.Namespace) -> StepPaths:
    return StepPaths(inputs=[("--a", args.a), ("--b", args.b)],
                     outputs=[("--out", args.out), ("--summary", args.summary)])
