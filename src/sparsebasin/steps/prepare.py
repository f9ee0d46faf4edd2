"""``prepare``: generate the MNIST-1D cache offline, or check another dataset is in place.

Run once before training (a workflow rule); training jobs then only read.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import data
from ..data import mnist1d
from ..errors import UserError
from ..io import write_json
from .common import DATASETS, NONNEG_INT, POSITIVE_INT, StepPaths


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", required=True, choices=DATASETS)
    p.add_argument("--data-dir", default="data", help="dataset root (default: data)")
    g = p.add_argument_group("MNIST-1D generation")
    g.add_argument("--n-train", type=POSITIVE_INT, default=None,
                   help=f"training examples (default {mnist1d.DEFAULT_N_TRAIN})")
    g.add_argument("--n-test", type=POSITIVE_INT, default=None, help=f"test examples (default {mnist1d.DEFAULT_N_TEST})")
    g.add_argument("--seed", type=NONNEG_INT, default=None, help=f"generator seed (default {mnist1d.DEFAULT_SEED})")
    p.add_argument("--stamp", default=None, metavar="JSON",
                   help="also write a small JSON record of what was checked (a workflow output)")


def run(args: argparse.Namespace) -> None:
    gen = {k: getattr(args, k) for k in ("n_train", "n_test", "seed") if getattr(args, k) is not None}
    if args.dataset == "mnist1d":
        config = mnist1d.MNIST1DConfig(**gen)
        path = mnist1d.ensure_cache(args.data_dir, config)
        summary = f"mnist1d: {config.n_train} train / {config.n_test} test examples (seed {config.seed})"
        print(path)
        record = {"dataset": "mnist1d", "path": str(path), "summary": summary,
                  "sha256": mnist1d.checksum_path(path).read_text(encoding="utf-8").split()[0], **gen}
    else:
        if gen:
            flags = ", ".join("--" + k.replace("_", "-") for k in gen)
            raise UserError(f"{flags}: MNIST-1D generation options, not used by {args.dataset}; drop them")
        summary = data.check_on_disk(args.dataset, args.data_dir)
        print(summary)
        record = {"dataset": args.dataset, "path": str(Path(args.data_dir)), "summary": summary}
    if args.stamp:
        write_json(args.stamp, record)


def paths(args: argparse.Namespace) -> StepPaths:
    return StepPaths(outputs=[("--stamp", args.stamp)])
