"""``sparsebasin interpolate``: loss and error along the linear path between two checkpoints.

Without ``--permutation``: the path A -> B (e.g. dense A and an IMP round's
model, Fig. 4a). With it: both the unpermuted path (``permuted`` False, the
baseline) and pi(A) -> B (``permuted`` True). Writes the curve CSV (columns
``alpha, mode, permuted, split, loss, acc, error`` + tags; provenance in
``<csv>.provenance.json``) and the barriers JSON (``barriers``: one record per
(mode, permuted, split) with ``loss_barrier`` and ``error_barrier``; tags,
provenance). See ``sparsebasin.symmetry.lmc`` for the modes.
"""

from __future__ import annotations

import argparse
import sys

from .common import NONNEG_INT, POSITIVE_INT, Number, StepPaths, add_data_args, add_run_args, csv_outputs, parse_tags, set_threads

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
    g.add_argument("--reset-batches", type=POSITIVE_INT, default=20,
                   help="training batches for BN reset and REPAIR statistics (default 20)")
    g.add_argument("--sample-seed", type=NONNEG_INT, default=0,
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


def setup(args: argparse.Namespace):
    """Threads, device, evaluation config, training set and evaluation splits."""
    from .. import data
    from .. import device as devices
    from ..symmetry.lmc import EvalConfig

    set_threads(args.threads)
    splits = args.splits
    device = devices.resolve(args.device)
    cfg = EvalConfig(device=device, batch_size=args.batch_size, eval_batches=args.eval_batches,
                     reset_batches=args.reset_batches, sample_seed=args.sample_seed)
    train = data.load_split(args.dataset, args.data_dir, "train", train_subset=args.train_subset)
    sets = {s: (train if s == "train" else data.load_split(args.dataset, args.data_dir, "test")) for s in splits}
    return device, cfg, train, sets


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> None:
    from .. import device as devices
    from .. import provenance
    from ..checkpoints import load_checkpoint, model_from_checkpoint, same_architecture
    from ..io import write_json
    from ..symmetry.lmc import alpha_grid, barriers, lmc, parse_modes
    from ..symmetry.permfile import load_permutation
    from ..symmetry.results import check_dataset, write_csv
    from ..symmetry.spec import permutation_spec

    tags = parse_tags(args.tag)
    alphas = alpha_grid(args.alphas)
    modes = parse_modes(args.modes)
    ckpt_a, ckpt_b = load_checkpoint(args.a), load_checkpoint(args.b)
    same_architecture(ckpt_a, ckpt_b, args.a, args.b)
    check_dataset(ckpt_a, args.dataset, args.a)
    model = model_from_checkpoint(ckpt_a, args.a)
    spec = permutation_spec(model)
    perm = None
    if args.permutation:
        pobj, _ = load_permutation(args.permutation, spec)
        same_architecture(pobj, ckpt_a, args.permutation, args.a)
        perm = pobj["perm"]
    device, cfg, train, sets = setup(args)
    model = devices.prepare_model(model, device)
    sd_a = {k: v.to(device) for k, v in ckpt_a["state_dict"].items()}
    sd_b = {k: v.to(device) for k, v in ckpt_b["state_dict"].items()}
    rows = lmc(model, spec, sd_a, sd_b, perm, alphas, modes, train, sets, cfg, log=log)
    config = {
        "step": "interpolate", "a": args.a, "b": args.b, "permutation": args.permutation, "dataset": args.dataset,
        "data_dir": args.data_dir, "train_subset": args.train_subset, "alphas": alphas, "modes": modes,
        "batch_size": args.batch_size, "eval_batches": args.eval_batches, "reset_batches": args.reset_batches,
        "sample_seed": args.sample_seed, "samples": cfg.samples, "splits": list(sets), "tags": tags,
    }
    prov = provenance.collect(config=config, device=device)
    write_csv(args.out, rows, tags, prov)
    result = {
        "barriers": barriers(rows),
        "epoch_a": int(ckpt_a["epoch"]),
        "epoch_b": int(ckpt_b["epoch"]),
        "inputs": {"a": args.a, "b": args.b, "permutation": args.permutation},
        "samples": cfg.samples,
        "tags": tags,
        "provenance": prov,
    }
    write_json(args.barriers, result)
    for b in result["barriers"]:
        log(f"{b['mode']:8s} permuted={b['permuted']!s:5s} {b['split']:5s} loss barrier {b['loss_barrier']:.4f} "
            f"error barrier {b['error_barrier']:.4f}")


def paths(args: argparse.Namespace) -> StepPaths:
    return StepPaths(inputs=[("--a", args.a), ("--b", args.b), ("--permutation", args.permutation)],
                     outputs=[*csv_outputs("--out", args.out), ("--barriers", args.barriers)])
