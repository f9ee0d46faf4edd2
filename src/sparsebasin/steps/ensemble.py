"""``sparsebasin ensemble``: accuracy and diversity of a group of runs (Table 1).

Reads each member's ``predictions.pt`` (test logits and labels), checks they
were all evaluated on the same test set, and writes one JSON:
``{group, n, member_acc_mean, member_acc_std, ensemble_acc, disagreement, kl,
js, tags, provenance}`` (definitions in ``sparsebasin.analysis.diversity``).
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import torch

from .. import io, provenance
from ..analysis.diversity import ensemble_metrics
from ..errors import UserError
from .common import StepPaths, parse_tags


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--predictions", nargs="+", required=True, metavar="PRED.pt",
                   help="predictions files of the members (at least 2)")
    p.add_argument("--group", required=True, help="group name, e.g. permuted")
    p.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE", help="label recorded in the JSON (repeatable)")
    p.add_argument("--out", required=True, metavar="JSON")


def _array(art: dict, key: str, path: str) -> np.ndarray:
    if key not in art:
        raise UserError(f"{path}: predictions file has no {key!r}; regenerate it with train")
    value = art[key]
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def run(args: argparse.Namespace) -> None:
    tags = parse_tags(args.tag)
    if len(args.predictions) < 2:
        raise UserError(f"--predictions needs at least 2 files for an ensemble, got {len(args.predictions)}")
    logits, labels = [], None
    first = args.predictions[0]
    for path in args.predictions:
        art = io.load_artifact(path, "predictions")
        x, y = _array(art, "logits", path), _array(art, "labels", path)
        if x.ndim != 2 or y.ndim != 1 or x.shape[0] != y.shape[0]:
            raise UserError(f"{path}: logits {tuple(x.shape)} and labels {tuple(y.shape)} do not form N x C and N; regenerate the predictions")
        if y.size and (int(y.min()) < 0 or int(y.max()) >= x.shape[1]):
            raise UserError(f"{path}: labels run to {int(y.max())} but the logits have {x.shape[1]} classes; the model "
                            "was evaluated on data with other classes than it was trained on: regenerate it")
        if labels is None:
            labels = y
        elif x.shape != logits[0].shape or not np.array_equal(y, labels):
            raise UserError(f"{path}: test set differs from {first} (shape or labels); evaluate every member on the same test set in the same order")
        logits.append(x)
    metrics = ensemble_metrics(logits, labels)
    config = {"step": "ensemble", "group": args.group, "predictions": list(args.predictions)}
    values = {
        "member_acc_mean": metrics.member_acc_mean,
        "member_acc_std": metrics.member_acc_std,
        "ensemble_acc": metrics.ensemble_acc,
        "disagreement": metrics.disagreement,
        "kl": metrics.kl,
        "kl_one_way": metrics.kl_one_way,
        "js": metrics.js,
    }
    # The logits are finite (io refuses others at load); a divergence that still overflows is null, with why.
    nonfinite = {k: "not finite: the members' logits are so far apart that their log-probabilities overflow"
                 for k, v in values.items()
                 if v is not None and not math.isfinite(float(v))}
    io.write_json(args.out, {
        "group": args.group,
        "n": metrics.n,
        "health": members_health(args.predictions),
        **{k: (None if k in nonfinite else v) for k, v in values.items()},
        "nonfinite": nonfinite,
        "tags": tags,
        "provenance": provenance.collect(config=config),
    })


def members_health(predictions: list[str]) -> dict:
    """The ensemble's health: its worst member's (sparsebasin.health), each flagged member named, so a dead or
    diverged member shows wherever Table 1 is read. A member's result.json sits beside its predictions.pt."""
    from pathlib import Path

    from .. import health

    order = ("ok", "chance", "exploded")
    status, reasons = "ok", []
    for path in predictions:
        result_path = Path(path).with_name("result.json")
        result = io.read_json(result_path) if result_path.is_file() else None
        member = health.status_of(result)
        if member != "ok":
            status = max(status, member, key=order.index)
            reasons += [f"member {Path(path).parent}: {r}" for r in (result.get("health") or {}).get("reasons", [])]
    return {"status": status, "reasons": reasons}


def paths(args: argparse.Namespace) -> StepPaths:
    return StepPaths(inputs=[("--predictions", p) for p in args.predictions], outputs=[("--out", args.out)],
                     distinct=[("--predictions", args.predictions)])
