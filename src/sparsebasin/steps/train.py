"""``sparsebasin train``: one dense or masked training run with rewind checkpoints."""

from __future__ import annotations

import argparse

from .common import (EPOCH_LIST, StepPaths, add_data_args, add_force_arg, add_model_args, add_optim_args,
                     add_run_args, data_options, model_cfg_from_args, optim_overrides, run_options)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_data_args(p)
    add_model_args(p)
    add_optim_args(p, preset_default="dense")
    add_run_args(p)
    g = p.add_argument_group("outputs")
    g.add_argument("--out-dir", required=True, help="run directory (final.pt, ckpt/, metrics.csv, result.json, ...)")
    g.add_argument("--save-epochs", type=EPOCH_LIST, default=[],
                   help="comma-separated epochs to checkpoint as ckpt/epoch{k}.pt (0 = init, before any step)")
    g.add_argument("--init", default=None, metavar="CKPT", help="start from this checkpoint instead of a seeded init")
    g.add_argument("--mask", default=None, metavar="MASK", help="train with this mask (pruned weights stay zero)")
    add_force_arg(p)


def run(args: argparse.Namespace) -> None:
    from ..training import resolve_config, train_run

    run = run_options(args)
    train_run(model_cfg=model_cfg_from_args(args), data=data_options(args),
              cfg=resolve_config(args.preset, **optim_overrides(args)), seed=args.seed,
              data_seed=args.seed if args.data_seed is None else args.data_seed, out_dir=args.out_dir,
              save_epochs=args.save_epochs, init_checkpoint=args.init, mask_path=args.mask, run=run)


def paths(args: argparse.Namespace) -> StepPaths:
    return StepPaths(inputs=[("--init", args.init), ("--mask", args.mask)], out_dirs=[("--out-dir", args.out_dir)])
