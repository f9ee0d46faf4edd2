"""``sparsebasin sparse``: one sparse run (a branch of ``sparsebasin.branches``: lth / naive / permuted / random /
signs) from rewind point k."""

from __future__ import annotations

import argparse

from ..branches import BRANCHES, BY_NAME
from .common import (EPOCH_LIST, NONNEG_INT, StepPaths, add_data_args, add_force_arg, add_optim_args, add_run_args,
                     data_options, optim_overrides, run_options)


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("branch")
    g.add_argument("--init", required=True, metavar="CKPT",
                   help="rewind checkpoint at epoch k: A's for lth, B's for naive and permuted")
    g.add_argument("--mask", required=True, metavar="MASK",
                   help="m_A for lth and naive; for permuted pi(m_A), or m_A with --mask-permutation")
    g.add_argument("--mask-permutation", metavar="PERM", default=None,
                   help="apply this permutation (match's perm.pt) to --mask in memory: pi(m_A) without a file of its own")
    g.add_argument("--signs-from", metavar="CKPT", default=None,
                   help="signs branch: A's rewind checkpoint at k, whose signs the init takes (B's magnitudes)")
    g.add_argument("--mask-seed", type=NONNEG_INT, default=None,
                   help="random branch: seed of the per-layer shuffle of --mask (default --seed); recorded")
    g.add_argument("--branch", required=True, choices=BRANCHES,
                   help="; ".join(f"{b}: {BY_NAME[b].about}" for b in BRANCHES) + " (recorded as tag branch=...)")
    add_data_args(p)
    add_optim_args(p, preset_default="sparse")
    add_run_args(p)
    o = p.add_argument_group("outputs")
    o.add_argument("--out-dir", required=True, help="run directory (final.pt, metrics.csv, predictions.pt, result.json)")
    o.add_argument("--save-epochs", type=EPOCH_LIST, default=[],
                   help="comma-separated epochs to checkpoint (0 = the masked start)")
    add_force_arg(p)


def run(args: argparse.Namespace) -> None:
    from ..training import resolve_config, run_sparse

    run = run_options(args)
    run_sparse(init=args.init, mask=args.mask, branch=args.branch, cfg=resolve_config(args.preset, **optim_overrides(args)),
               data=data_options(args), out_dir=args.out_dir, seed=args.seed, data_seed=args.data_seed,
               save_epochs=args.save_epochs, mask_permutation=args.mask_permutation, run=run,
               signs_from=args.signs_from, mask_seed=args.mask_seed)


def paths(args: argparse.Namespace) -> StepPaths:
    return StepPaths(inputs=[("--init", args.init), ("--mask", args.mask), ("--mask-permutation", args.mask_permutation),
                             ("--signs-from", args.signs_from)],
                     out_dirs=[("--out-dir", args.out_dir)])
