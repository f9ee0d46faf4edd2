"""Matching two trained checkpoints: the permutation aligning A to B, written with its summary.

The step ``sparsebasin match`` is a thin CLI over ``match_checkpoints``.
Activation matching streams both models' activations over ``batches``
batches of a seeded random sample of the whole training split (the same
images for A and B, no augmentation; recorded with the classes it covers);
weight matching uses the weights alone, and its correlations are then
measured on the same sample so both methods report comparable summaries.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ..options import DataOptions, option

STATS = ("correlation", "covariance")


def _methods() -> tuple:
    from .matching import METHODS  # the one table of methods (imports torch: read when a step builds its parser)

    return tuple(METHODS)


def _method_help() -> str:
    from .matching import METHODS

    return "how the permutation is found: " + "; ".join(f"{n}: {m.find.__doc__.split(':')[0]}"
                                                      for n, m in METHODS.items())


def _stream_points() -> tuple:
    from .spec import STREAM_POINTS

    return STREAM_POINTS


@dataclass(frozen=True)
class MatchOptions:
    """How A is matched to B: the ``sparsebasin match`` options, the config's ``match`` section (the plan passes
    the ones it sets: ``options.section_argv``) and the matching's key (the section) in one declaration each.
    The method is an axis of the plan (``match.method`` may list several), so each job passes its own."""

    method: str = option(_method_help, choices=_methods, default="activation")
    stat: str = option("activation matching score: Pearson correlation or cross-covariance (Eq. 1)",
                       choices=STATS, default="correlation")
    batch_size: int = option("examples per batch of the statistics", "positive_int", 500)
    sample_seed: int = option("seed of the random sample of training images the statistics use", "seed", 0)
    stream_points: str = option("where ResNet20's residual-stream groups are matched: stage_output (each stage's "
                                "output, REPAIR's choice) or authors_code (res3 at layer3.1's output, as the "
                                "paper's code)", choices=_stream_points, default="stage_output")
    batches: int = option("training batches of activations (weight matching: of the reported correlations)",
                          "nonneg_int", 20)
    chunk: int | None = option("forward at most this many examples at a time (same result, less memory)",
                               "positive_int", None, result=False)
    seed: int = option("group order of weight matching", "seed", 0)
    max_iter: int = option("weight matching passes at most", "positive_int", 100)


def match_checkpoints(a: str | Path, b: str | Path, *, data: DataOptions, opts: MatchOptions, out: str | Path,
                      summary_out: str | Path, device: str = "auto", tags: dict | None = None) -> dict:
    """Match checkpoint ``a`` to ``b``; write the permutation (``out``) and its summary JSON; return the summary."""
    from .. import data as datamod
    from .. import distributed
    from .. import device as devices
    from .. import provenance, unhonoured
    from ..checkpoints import load_checkpoint, model_from_checkpoint, same_architecture
    from ..errors import UserError
    from ..io import write_json
    from .matching import METHODS, MatchJob, NonFiniteStatistics
    from .permfile import save_permutation
    from .results import check_dataset
    from .spec import permutation_spec

    tags = dict(tags or {})
    method = METHODS.get(opts.method)
    if method is None:
        raise UserError(f"--method {opts.method!r} is not one of {', '.join(METHODS)} (symmetry.matching.METHODS)")
    if opts.batches < 1 and method.needs_data:
        raise UserError(f"--batches must be >= 1 for {opts.method} matching (it reads activations), got {opts.batches}")
    dev = devices.resolve(device)
    ckpt_a, ckpt_b = load_checkpoint(a), load_checkpoint(b)
    same_architecture(ckpt_a, ckpt_b, a, b)
    check_dataset(ckpt_a, data.dataset, a)
    model_a = devices.prepare_model(model_from_checkpoint(ckpt_a, a), dev)
    model_b = devices.prepare_model(model_from_checkpoint(ckpt_b, b), dev)
    spec = permutation_spec(model_a, stream_points=opts.stream_points)
    sample: dict = {}

    def train_batches():
        full = data.load("train")
        datamod.check_fits(ckpt_a["data"], full, a, data.data_dir)  # classes and inputs as read, not the card's
        ds, info = datamod.sample_split(full, opts.batches * opts.batch_size, seed=opts.sample_seed,
                                        what="match --batches", batch_size=opts.batch_size)
        if len(ds) < 2:  # a correlation over one example is 0/0: it would give the identity as "matched"
            raise UserError(f"matching needs at least 2 training examples for its correlations, got {len(ds)} "
                            f"(--batches {opts.batches} x --batch-size {opts.batch_size} of a split of {len(full)}); "
                            "raise them or --train-subset")
        sample.update(info)
        return datamod.batches(ds, opts.batch_size, shuffle=False, augment=False, device=dev,
                               shard=distributed.batch_shard())

    t0 = time.perf_counter()
    job = MatchJob(model_a, model_b, ckpt_a["state_dict"], ckpt_b["state_dict"], spec, train_batches, opts, dev)
    try:
        perm, meta = method.find(job)
    except NonFiniteStatistics as exc:
        raise UserError(f"cannot match {a} (A) to {b} (B): {exc}; check that both runs trained "
                        "(their result.json 'health'); nothing was written") from None
    meta["seconds"] = time.perf_counter() - t0  # the time to find the permutation (data loading included)
    ignored = {}
    if not method.needs_data and opts.stat != MatchOptions.stat:  # a score of activations no activation reads
        ignored["stat"] = unhonoured.note("--stat", opts.stat, None, f"{opts.method} matching reads no activation "
                                          "score; its reported correlations are Pearson's")
    meta["sample"] = sample or None
    meta["stream_points"] = opts.stream_points
    meta["epoch_a"], meta["epoch_b"] = int(ckpt_a["epoch"]), int(ckpt_b["epoch"])
    config = {"step": "match", "a": str(a), "b": str(b), **data.record(), **asdict(opts), "tags": tags}
    config.pop("chunk")  # how much is forwarded at once never changes the result
    prov = provenance.collect(config=config, seeds={"weight_matching": opts.seed, "sample": opts.sample_seed},
                              device=dev)
    if distributed.writer():  # data-parallel: every rank solved the same assignments; rank 0 writes
        save_permutation(out, perm, ckpt_a["model"], ckpt_a["data"], meta, prov)
    summary = {
        "method": meta["method"],
        "statistic": meta["statistic"],
        "batches": meta.get("batches", 0),
        "examples": meta.get("examples", 0),
        "sample": meta["sample"],
        "stream_points": opts.stream_points,
        "mean_correlation": meta.get("mean_correlation"),
        "mean_correlation_identity": meta.get("mean_correlation_identity"),
        "group_correlation": meta.get("group_correlation", {}),
        "group_size": dict(spec.sizes),
        "nonfinite": meta.get("nonfinite", {}),
        **({"unhonoured": ignored} if ignored else {}),
        "epoch_a": meta["epoch_a"],
        "epoch_b": meta["epoch_b"],
        "seconds": meta["seconds"],
        "inputs": {"a": str(a), "b": str(b), "permutation": str(out)},
        "tags": tags,
        "provenance": prov,
    }
    if distributed.writer():
        write_json(summary_out, summary)
    return summary


__all__ = ["STATS", "MatchOptions", "match_checkpoints"]
