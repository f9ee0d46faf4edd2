"""``sparsebasin permute``: apply a permutation (or its inverse) to a mask or a checkpoint
(``symmetry.permfile.permute_file``: same architecture required, every other field kept)."""

from __future__ import annotations

import argparse

from .common import StepPaths


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--permutation", required=True, metavar="PERM.pt")
    p.add_argument("--input", required=True, metavar="FILE", help="a mask or checkpoint artifact")
    p.add_argument("--out", required=True, metavar="FILE")
    p.add_argument("--inverse", action="store_true", help="apply the inverse permutation (map pi(A) back to A)")


def run(args: argparse.Namespace) -> None:
    from ..symmetry.permfile import permute_file

    kind = permute_file(args.permutation, args.input, args.out, inverse=args.inverse)
    print(f"wrote {'inverse-' if args.inverse else ''}permuted {kind} {args.out}")


def paths(args: argparse.Namespace) -> StepPaths:
    return StepPaths(inputs=[("--permutation", args.permutation), ("--input", args.input)],
                     outputs=[("--out", args.out)])
