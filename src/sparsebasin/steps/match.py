"""``sparsebasin match``: the permutation aligning checkpoint A to checkpoint B.

Activation matching (default) streams both models' activations over
``--batches`` batches of a seeded random sample of the whole training split
(``--sample-seed``; no augmentation; the same images for A and B), recorded in
the outputs with the number of distinct classes it covers; weight matching
uses the weights alone, and its correlations are then measured on the same
sample so both methods report comparable summaries. Writes the permutation
artifact (``--out``) and a JSON summary (``--summary``: per-group and mean
matched correlation, method, tags, provenance).
"""

from __future__ import annotations

import argparse
import time

from ..symmetry.spec import STREAM_POINTS
from .common import NONNEG_INT, POSITIVE_INT, StepPaths, add_data_args, add_run_args, parse_tags, set_threads


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--a", required=True, metavar="CKPT", help="checkpoint to permute (its model/data are recorded)")
    p.add_argument("--b", required=True, metavar="CKPT", help="checkpoint to align A to")
    add_data_args(p)
    g = p.add_argument_group("matching")
    g.add_argument("--method", choices=("activation", "weight"), default="activation")
    g.add_argument("--stat", choices=("correlation", "covariance"), default="correlation",
                   help="activation matching score: Pearson correlation or cross-covariance (Eq. 1)")
    g.add_argument("--batches", type=NONNEG_INT, default=20, help="training batches of activations (default 20)")
    g.add_argument("--batch-size", type=POSITIVE_INT, default=500)
    g.add_argument("--chunk", type=POSITIVE_INT, default=None,
                   help="forward at most this many examples at a time (same result, less memory)")
    g.add_argument("--sample-seed", type=NONNEG_INT, default=0,
                   help="seed of the random sample of training images the statistics use (default 0)")
    g.add_argument("--stream-points", choices=STREAM_POINTS, default="stage_output",
                   help="where ResNet20's residual-stream groups are matched: stage_output (each stage's output, "
                        "REPAIR's choice; default) or authors_code (res3 at layer3.1's output, as the paper's code)")
    g.add_argument("--seed", type=NONNEG_INT, default=0, help="group order of weight matching")
    g.add_argument("--max-iter", type=POSITIVE_INT, default=100, help="weight matching passes at most")
    add_run_args(p, seed=False, progress=False)
    o = p.add_argument_group("outputs")
    o.add_argument("--out", required=True, metavar="PERM.pt")
    o.add_argument("--summary", required=True, metavar="PERM.json")


def run(args: argparse.Namespace) -> None:
    from .. import data, provenance
    from .. import device as devices
    from ..checkpoints import load_checkpoint, model_from_checkpoint, same_architecture
    from ..errors import UserError
    from ..io import write_json
    from ..symmetry.matching import activation_matching, activation_statistics, correlation_summary, weight_matching
    from ..symmetry.permfile import save_permutation
    from ..symmetry.results import check_dataset
    from ..symmetry.spec import permutation_spec

    tags = parse_tags(args.tag)
    set_threads(args.threads)
    if args.batches < 1 and args.method == "activation":
        raise UserError(f"--batches must be >= 1 for activation matching (>= 0 for weight matching), got {args.batches}")
    device = devices.resolve(args.device)
    ckpt_a, ckpt_b = load_checkpoint(args.a), load_checkpoint(args.b)
    same_architecture(ckpt_a, ckpt_b, args.a, args.b)
    check_dataset(ckpt_a, args.dataset, args.a)
    model_a = devices.prepare_model(model_from_checkpoint(ckpt_a, args.a), device)
    model_b = devices.prepare_model(model_from_checkpoint(ckpt_b, args.b), device)
    spec = permutation_spec(model_a, stream_points=args.stream_points)
    sample: dict = {}

    def train_batches():
        ds = data.load_split(args.dataset, args.data_dir, "train", train_subset=args.train_subset)
        ds, info = data.sample_split(ds, args.batches * args.batch_size, seed=args.sample_seed)
        sample.update(info)
        return data.batches(ds, args.batch_size, shuffle=False, augment=False, device=device)

    t0 = time.perf_counter()
    if args.method == "activation":
        perm, meta = activation_matching(model_a, model_b, spec, train_batches(), stat=args.stat, device=device,
                                         max_batches=args.batches, chunk=args.chunk)
    else:
        perm, meta = weight_matching(spec, ckpt_a["state_dict"], ckpt_b["state_dict"], seed=args.seed, max_iter=args.max_iter)
        if args.batches > 0:
            stats, used, examples = activation_statistics(model_a, model_b, spec, train_batches(), device,
                                                          args.batches, args.chunk)
            meta.update(batches=used, examples=examples, **correlation_summary(stats, perm))
        else:
            meta.update(batches=0, examples=0)
    meta["seconds"] = time.perf_counter() - t0
    meta["sample"] = sample or None
    meta["stream_points"] = args.stream_points
    meta["epoch_a"], meta["epoch_b"] = int(ckpt_a["epoch"]), int(ckpt_b["epoch"])
    config = {
        "step": "match", "a": args.a, "b": args.b, "dataset": args.dataset, "data_dir": args.data_dir,
        "train_subset": args.train_subset, "method": args.method, "stat": args.stat, "batches": args.batches,
        "batch_size": args.batch_size, "seed": args.seed, "max_iter": args.max_iter, "tags": tags,
        "sample_seed": args.sample_seed, "stream_points": args.stream_points,
    }
    prov = provenance.collect(config=config, seeds={"weight_matching": args.seed, "sample": args.sample_seed},
                              device=device)
    save_permutation(args.out, perm, ckpt_a["model"], ckpt_a["data"], meta, prov)
    summary = {
        "method": meta["method"],
        "statistic": meta["statistic"],
        "batches": meta.get("batches", 0),
        "examples": meta.get("examples", 0),
        "sample": meta["sample"],
        "stream_points": args.stream_points,
        "mean_correlation": meta.get("mean_correlation"),
        "mean_correlation_identity": meta.get("mean_correlation_identity"),
        "group_correlation": meta.get("group_correlation", {}),
        "group_size": dict(spec.sizes),
        "epoch_a": meta["epoch_a"],
        "epoch_b": meta["epoch_b"],
        "seconds": meta["seconds"],
        "inputs": {"a": args.a, "b": args.b, "permutation": args.out},
        "tags": tags,
        "provenance": prov,
    }
    write_json(args.summary, summary)
    mc = summary["mean_correlation"]
    print(f"matched {args.a} -> {args.b} ({args.method}, {meta.get('batches', 0)} batches): "
          f"mean correlation {mc if mc is None else round(mc, 4)} in {meta['seconds']:.1f}s")


def paths(args: argparse.Namespace) -> StepPaths:
    return StepPaths(inputs=[("--a", args.a), ("--b", args.b)],
                     outputs=[("--out", args.out), ("--summary", args.summary)])
