"""``sparsebasin train``: one dense or masked training run with rewind checkpoints."""

from __future__ import annotations

import argparse

import torch

from .common import (add_data_args, add_model_args, add_optim_args, add_run_args, model_cfg_from_args, parse_int_list,
                     parse_tags)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_data_args(p)
    add_model_args(p)
    add_optim_args(p, preset_default="dense")
    add_run_args(p)
    g = p.add_argument_group("outputs")
    g.add_argument("--out-dir", required=True, help="run directory (final.pt, ckpt/, metrics.csv, result.json, ...)")
    g.add_argument("--save-epochs", default="",
                   help="comma-separated epochs to checkpoint as ckpt/epoch{k}.pt (0 = init, before any step)")
    g.add_argument("--init", default=None, metavar="CKPT", help="start from this checkpoint instead of a seeded init")
    g.add_argument("--mask", default=None, metavar="MASK", help="train with this mask (pruned weights stay zero)")


def optim_overrides(args: argparse.Namespace) -> dict:
    """The optimisation options the user set (None = take the preset's value)."""
    return {
        "epochs": args.epochs,
        "lr": args.lr,
        "momentum": args.momentum,
        "weight_decay": args.weight_decay,
        "batch_size": args.batch_size,
        "warmup_epochs": args.warmup_epochs,
        "augment": None if args.augment == "auto" else args.augment,
    }


def set_threads(threads: int | None) -> None:
    if threads is not None:
        from ..errors import UserError

        if threads < 1:
            raise UserError(f"--threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)


def run(args: argparse.Namespace) -> None:
    from ..training import resolve_config, train_run

    set_threads(args.threads)
    cfg = resolve_config(args.preset, **optim_overrides(args))
    train_run(
        model_cfg=model_cfg_from_args(args),
        dataset=args.dataset,
        data_dir=args.data_dir,
        cfg=cfg,
        seed=args.seed,
        data_seed=args.seed if args.data_seed is None else args.data_seed,
        out_dir=args.out_dir,
        save_epochs=parse_int_list(args.save_epochs),
        init_checkpoint=args.init,
        mask_path=args.mask,
        train_subset=args.train_subset,
        device=args.device,
        tags=parse_tags(args.tag),
        progress=args.progress,
    )
