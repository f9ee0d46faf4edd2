"""``sparsebasin prune``: iterative magnitude pruning of a trained model, one mask per target sparsity."""

from __future__ import annotations

import argparse

from .common import add_data_args, add_run_args, parse_float_list, parse_tags
from .train import set_threads

FT_PRESET_DEFAULT = {"ft": "imp_ft", "rewind": "sparse"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("pruning")
    g.add_argument("--checkpoint", required=True, metavar="CKPT", help="the trained dense model A (final.pt)")
    g.add_argument("--targets", required=True, help="comma-separated target sparsities, e.g. 0.8,0.9,0.95,0.97")
    g.add_argument("--rate", type=float, default=0.2, help="fraction of the remaining prunable weights removed per round")
    g.add_argument("--mode", choices=("ft", "rewind"), default="ft",
                   help="ft: fine-tune after each round (IMP-FT); rewind: reset survivors to --rewind and retrain")
    g.add_argument("--rewind", default=None, metavar="CKPT", help="rewind checkpoint (epoch k) for --mode rewind")
    g.add_argument("--chain", action=argparse.BooleanOptionalAction, default=True,
                   help="one IMP chain serves every target, each target a capped branch (default); "
                        "--no-chain runs a separate IMP per target")
    g.add_argument("--prune-include", action="append", default=[], metavar="GLOB",
                   help="prune only parameters matching this glob (repeatable; default: every Conv/Linear weight "
                        "except shortcut convs)")
    g.add_argument("--prune-exclude", action="append", default=[], metavar="GLOB",
                   help="never prune parameters matching this glob (repeatable), e.g. 'head.*'")
    f = p.add_argument_group("fine-tuning per round (unset values come from --ft-preset)")
    f.add_argument("--ft-preset", default=None,
                   help="training preset of each round (default: imp_ft for --mode ft, sparse for --mode rewind)")
    f.add_argument("--ft-epochs", type=int, default=None)
    f.add_argument("--ft-lr", type=float, default=None)
    f.add_argument("--ft-momentum", type=float, default=None)
    f.add_argument("--ft-weight-decay", type=float, default=None)
    f.add_argument("--ft-batch-size", type=int, default=None)
    f.add_argument("--ft-warmup-epochs", type=float, default=None)
    f.add_argument("--augment", choices=("auto", "on", "off"), default="auto",
                   help="random crop + flip during fine-tuning (auto: on for image datasets)")
    add_data_args(p)
    add_run_args(p)
    p.add_argument("--out-dir", required=True,
                   help="output directory: S{s}/{mask.pt,sparsity.json,model.pt}, rounds/round{r}.pt, rounds.json")


def run(args: argparse.Namespace) -> None:
    from ..pruning.imp import run_imp
    from ..training import resolve_config

    set_threads(args.threads)
    cfg = resolve_config(
        args.ft_preset or FT_PRESET_DEFAULT[args.mode],
        epochs=args.ft_epochs,
        lr=args.ft_lr,
        momentum=args.ft_momentum,
        weight_decay=args.ft_weight_decay,
        batch_size=args.ft_batch_size,
        warmup_epochs=args.ft_warmup_epochs,
        augment=None if args.augment == "auto" else args.augment,
    )
    run_imp(
        checkpoint=args.checkpoint,
        targets=parse_float_list(args.targets),
        out_dir=args.out_dir,
        dataset=args.dataset,
        data_dir=args.data_dir,
        ft_cfg=cfg,
        rate=args.rate,
        mode=args.mode,
        rewind=args.rewind,
        chain=args.chain,
        include=args.prune_include,
        exclude=args.prune_exclude,
        train_subset=args.train_subset,
        seed=args.seed,
        data_seed=args.data_seed,
        device=args.device,
        tags=parse_tags(args.tag),
        progress=args.progress,
    )
