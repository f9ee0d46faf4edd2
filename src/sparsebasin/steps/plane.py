"""``sparsebasin plane``: loss and 0-1 error on the plane through three checkpoints (Fig. 4b).

Typically origin = dense A, p1 = the LTH solution, p2 = the permuted solution
mapped back to A's coordinates by ``--p2-permutation PERM.pt --inverse``.
Writes a CSV ``point, u, v, mode, split, loss, acc, error`` + tags (``point``
empty on grid rows, ``origin``/``p1``/``p2`` on the anchor rows; provenance in
``<csv>.provenance.json``). The work is ``symmetry.landscape.plane_through``; see
``sparsebasin.symmetry.lmc`` for the geometry.
"""

from __future__ import annotations

import argparse

from .common import NONNEG_FLOAT, Number, StepPaths, add_data_args, csv_outputs, data_options, run_options
from .interpolate import add_eval_args, eval_options

GRID = Number(int, "an integer >= 2 (grid points per axis)", 2)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--origin", required=True, metavar="CKPT")
    p.add_argument("--p1", required=True, metavar="CKPT")
    p.add_argument("--p2", required=True, metavar="CKPT")
    p.add_argument("--p2-permutation", default=None, metavar="PERM.pt", help="permute p2 before use")
    p.add_argument("--inverse", action="store_true", help="apply the inverse of --p2-permutation (pi^-1)")
    add_data_args(p)
    g = p.add_argument_group("plane")
    g.add_argument("--grid", type=GRID, default=21, help="grid points per axis (default 21)")
    g.add_argument("--margin", type=NONNEG_FLOAT, default=0.2,
                   help="extend the anchors' bounding box by this fraction on each side (default 0.2)")
    g.add_argument("--mode", choices=("plain", "bn_reset"), default="bn_reset",
                   help="BN statistics: as combined (plain) or recomputed at each point (bn_reset, default)")
    add_eval_args(p, splits=("test",))
    p.add_argument("--out", required=True, metavar="CSV")


def run(args: argparse.Namespace) -> None:
    from ..symmetry.landscape import plane_through

    run = run_options(args)
    plane_through(args.origin, args.p1, args.p2, p2_permutation=args.p2_permutation, inverse=args.inverse,
                  data=data_options(args), grid=args.grid, margin=args.margin, mode=args.mode, ev=eval_options(args),
                  out=args.out, device=run.device, tags=run.tags)


def paths(args: argparse.Namespace) -> StepPaths:
    return StepPaths(inputs=[("--origin", args.origin), ("--p1", args.p1), ("--p2", args.p2),
                             ("--p2-permutation", args.p2_permutation)],
                     outputs=csv_outputs("--out", args.out))
