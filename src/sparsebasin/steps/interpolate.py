"""``sparsebasin interpolate``: loss and error along the linear path between two checkpoints.

Without ``--permutation``: the path A -> B (e.g. dense A and an IMP round's
model, Fig. 4a). With it: both the unpermuted path (``permuted`` False, the
baseline) and pi(A) -> B (``permuted`` True). Writes the curve CSV (columns
``alpha, mode, permuted, split, loss, acc, error`` + tags; provenance in
``<csv>.provenance.json``) and the barriers JSON (``barriers``: one record per
(mode, permuted, split) with ``loss_barrier`` and ``error_barrier``; tags,
provenance). The work is ``symmetry.landscape.interpolate_checkpoints``; see
``sparsebasin.symmetry.lmc`` for the modes. A killed run resumes at the next
unfinished point (``symmetry.pointlog``).
"""

from __future__ import annotations

import argparse

from .common import (POSITIVE_INT, SEED, Number, StepPaths, add_data_args, add_run_args, csv_outputs, data_options,
                     run_options)

ALPHAS = Number(int, "an integer >= 2 (grid points from 0 to 1)", 2)


def _splits(text: str) -> list[str]:
    splits = [s.strip() for s in text.split(",") if s.strip()]
    if not splits or any(s not in ("train", "test") for s in splits):
        raise argparse.ArgumentTypeError(f"must be a comma-separated subset of train,test, got {text!r}")
    return list(dict.fromkeys(splits))


def add_eval_args(p: argparse.ArgumentParser, splits: str = "train,test") -> None:
    g = p.add_argument_group("evaluation")
    g.add_argument("--batch-size", type=POSITIVE_INT, default=500)
    g.add_argument("--eval-batches", type=POSITIVE_INT, default=None,
                   help="evaluate on the first N batches of each split (default: all)")
    g.add_argument("--train-eval-examples", type=POSITIVE_INT, default=None, metavar="N",
                   help="evaluate the train split on a seeded random sample of N examples, the other splits whole "
                        "(default: as the other splits); the sample is recorded")
    g.add_argument("--reset-batches", type=POSITIVE_INT, default=20,
                   help="training batches for BN reset and REPAIR statistics (default 20)")
    g.add_argument("--sample-seed", type=SEED, default=0,
                   help="seed of the random samples behind --reset-batches and --eval-batches (default 0)")
    g.add_argument("--splits", type=_splits, default=_splits(splits),
                   help=f"comma-separated splits to evaluate (default {splits})")
    add_run_args(p, seed=False, progress=False)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--a", required=True, metavar="CKPT", help="alpha = 0 end (permuted by --permutation)")
    p.add_argument("--b", required=True, metavar="CKPT", help="alpha = 1 end")
    p.add_argument("--permutation", default=None, metavar="PERM.pt", help="also evaluate the path pi(A) -> B")
    add_data_args(p)
    g = p.add_argument_group("path")
    g.add_argument("--alphas", type=ALPHAS, default=11, help="grid points from 0 to 1 (default 11)")
    g.add_argument("--modes", default="plain,bn_reset,repair",
                   help="comma-separated: plain, bn_reset, repair, repair_block (see sparsebasin.symmetry.lmc)")
    add_eval_args(p)
    o = p.add_argument_group("outputs")
    o.add_argument("--out", required=True, metavar="CSV")
    o.add_argument("--barriers", required=True, metavar="JSON")


def eval_options(args: argparse.Namespace):
    from ..symmetry.landscape import EvalOptions

    return EvalOptions(batch_size=args.batch_size, eval_batches=args.eval_batches, reset_batches=args.reset_batches,
                       sample_seed=args.sample_seed, splits=tuple(args.splits),
                       train_examples=args.train_eval_examples)


def run(args: argparse.Namespace) -> None:
    from ..symmetry.landscape import interpolate_checkpoints

    run = run_options(args)
    interpolate_checkpoints(args.a, args.b, permutation=args.permutation, data=data_options(args), alphas=args.alphas,
                            modes=args.modes, ev=eval_options(args), out=args.out, barriers_out=args.barriers,
                            device=run.device, tags=run.tags)


def paths(args: argparse.Namespace) -> StepPaths:
    return StepPaths(inputs=[("--a", args.a), ("--b", args.b), ("--permutation", args.permutation)],
                     outputs=[*csv_outputs("--out", args.out), ("--barriers", args.barriers)])
