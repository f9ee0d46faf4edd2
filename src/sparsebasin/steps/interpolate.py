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

from .common import (Number, StepPaths, add_data_args, add_record_args, add_run_args, csv_outputs, data_options,
                     record_values, run_options)

ALPHAS = Number(int, "an integer >= 2 (grid points from 0 to 1)", 2)


def add_eval_args(p: argparse.ArgumentParser, splits: tuple = ("train", "test")) -> None:
    """The evaluation options (``symmetry.landscape.EvalOptions``), with this step's default splits."""
    from ..symmetry.landscape import EvalOptions

    add_record_args(p.add_argument_group("evaluation"), EvalOptions, step_defaults={"splits": splits})
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

    return EvalOptions(**record_values(EvalOptions, args))


def run(args: argparse.Namespace) -> None:
    from ..symmetry.landscape import interpolate_checkpoints

    run = run_options(args)
    interpolate_checkpoints(args.a, args.b, permutation=args.permutation, data=data_options(args), alphas=args.alphas,
                            modes=args.modes, ev=eval_options(args), out=args.out, barriers_out=args.barriers,
                            device=run.device, tags=run.tags)


def paths(args: argparse.Namespace) -> StepPaths:
    return StepPaths(inputs=[("--a", args.a), ("--b", args.b), ("--permutation", args.permutation)],
                     outputs=[*csv_outputs("--out", args.out), ("--barriers", args.barriers)])
