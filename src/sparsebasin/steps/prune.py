"""``sparsebasin prune``: iterative magnitude pruning of a trained model, one mask per target sparsity."""

from __future__ import annotations

import argparse

from .common import (SPARSITY_LIST, StepPaths, add_data_args, add_force_arg, add_optim_args, add_record_args,
                     add_run_args, data_options, optim_overrides, record_values, run_options)

FT_PRESET_DEFAULT = {"ft": "imp_ft", "rewind": "sparse"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..pruning.schedule import IMPOptions

    g = p.add_argument_group("pruning")
    g.add_argument("--checkpoint", required=True, metavar="CKPT", help="the trained dense model A (final.pt)")
    g.add_argument("--targets", required=True, type=SPARSITY_LIST,
                   help="comma-separated target sparsities, e.g. 0.8,0.9,0.95,0.97")
    add_record_args(g, IMPOptions)  # --rate, --mode
    g.add_argument("--rewind", default=None, metavar="CKPT", help="rewind checkpoint (epoch k) for --mode rewind")
    g.add_argument("--chain", action=argparse.BooleanOptionalAction, default=True,
                   help="one IMP chain serves every target, each target a capped branch (default); "
                        "--no-chain runs a separate IMP per target")
    g.add_argument("--prune-include", action="append", default=[], metavar="GLOB",
                   help="prune only parameters matching this glob (repeatable; default: the model card's prunable "
                        "set, every Linear and convolution weight except shortcut convs)")
    g.add_argument("--prune-exclude", action="append", default=[], metavar="GLOB",
                   help="never prune parameters matching this glob (repeatable), e.g. 'head.*'")
    add_optim_args(p, preset_default=None, prefix="ft-",
                   title="fine-tuning per round (unset values come from --ft-preset: imp_ft for --mode ft, "
                         "sparse for --mode rewind)")
    add_data_args(p)
    add_run_args(p)
    p.add_argument("--out-dir", required=True,
                   help="output directory: S{s}/{mask.pt,sparsity.json,model.pt}, rounds/round{r}.pt, rounds.json")
    add_force_arg(p)


def run(args: argparse.Namespace) -> None:
    from ..pruning.imp import run_imp
    from ..pruning.schedule import IMPOptions
    from ..training import resolve_config

    run = run_options(args)
    cfg = resolve_config(args.ft_preset or FT_PRESET_DEFAULT[args.mode], **optim_overrides(args, prefix="ft-"))
    imp = IMPOptions(**record_values(IMPOptions, args), rewind=args.rewind, chain=args.chain,
                     include=tuple(args.prune_include), exclude=tuple(args.prune_exclude))
    run_imp(checkpoint=args.checkpoint, targets=args.targets, out_dir=args.out_dir, data=data_options(args),
            ft_cfg=cfg, imp=imp, seed=args.seed, data_seed=args.data_seed, run=run)


def paths(args: argparse.Namespace) -> StepPaths:
    return StepPaths(inputs=[("--checkpoint", args.checkpoint), ("--rewind", args.rewind)],
                     out_dirs=[("--out-dir", args.out_dir)])
