"""Ensemble accuracy and functional diversity of a group of models (Table 1).

From each member's test-set logits (N x C, same test points and order):

- member accuracy: mean and sample std (ddof=1) over members;
- ensemble accuracy: argmax of the MEAN SOFTMAX (not a majority vote);
- disagreement: fraction of test points whose argmax differs, averaged over
  all unordered member pairs;
- KL: KL(p_i || p_j) averaged over test points and over all ORDERED pairs
  i != j. KL is asymmetric; averaging both directions makes the number
  independent of member order and equals the mean over unordered pairs of the
  symmetrised 0.5 * [KL(p_i||p_j) + KL(p_j||p_i)]; ``kl_one_way`` is the
  one-directional mean over the unordered pairs i < j of KL(p_i || p_j)
  (depends on member order; reported beside it for comparison);
- JS: Jensen-Shannon divergence 0.5 KL(p_i||m) + 0.5 KL(p_j||m), m = (p_i+p_j)/2,
  averaged over test points and unordered pairs.

Divergences are in nats. Everything is computed from float64 log-softmax
(JS via ``logaddexp``), so no probability is ever logged and nothing needs an
epsilon; tiny negative rounding is clamped to zero. Rows are processed in
chunks so ImageNet-sized logits do not need M x N x C float64 in memory.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

from ..errors import UserError


@dataclass(frozen=True)
class EnsembleMetrics:
    n: int
    member_acc: tuple[float, ...]
    member_acc_mean: float
    member_acc_std: float
    ensemble_acc: float
    disagreement: float
    kl: float
    js: float
    kl_one_way: float = float("nan")

    def as_dict(self) -> dict:
        d = asdict(self)
        d["member_acc"] = list(self.member_acc)
        return d


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax in float64, stable for any finite logits."""
    x = np.asarray(logits, dtype=np.float64)
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def ensemble_metrics(logits: Sequence, labels, chunk_rows: int = 4096) -> EnsembleMetrics:
    """Metrics of the ensemble whose members produced ``logits`` on ``labels``."""
    members = [np.asarray(x) for x in logits]
    y = np.asarray(labels)
    _check(members, y)
    m = len(members)
    n_points = y.shape[0]
    pairs = list(itertools.combinations(range(m), 2))

    correct = np.zeros(m)
    ensemble_correct = 0
    disagree = np.zeros(len(pairs))
    kl = np.zeros(len(pairs))  # KL(i||j) + KL(j||i), summed over points
    kl_forward = np.zeros(len(pairs))  # KL(i||j), i < j
    js = np.zeros(len(pairs))
    for start in range(0, n_points, chunk_rows):
        stop = min(start + chunk_rows, n_points)
        logp = np.stack([log_softmax(x[start:stop]) for x in members])  # M x n x C
        prob = np.exp(logp)
        pred = logp.argmax(axis=-1)
        yc = y[start:stop]
        correct += (pred == yc).sum(axis=1)
        ensemble_correct += int((prob.mean(axis=0).argmax(axis=-1) == yc).sum())
        for p, (i, j) in enumerate(pairs):
            disagree[p] += (pred[i] != pred[j]).sum()
            kl_ij = np.maximum((prob[i] * (logp[i] - logp[j])).sum(axis=-1), 0.0)
            kl_ji = np.maximum((prob[j] * (logp[j] - logp[i])).sum(axis=-1), 0.0)
            kl[p] += (kl_ij + kl_ji).sum()
            kl_forward[p] += kl_ij.sum()
            log_mid = np.logaddexp(logp[i], logp[j]) - math.log(2.0)
            js_point = 0.5 * (prob[i] * (logp[i] - log_mid)).sum(axis=-1) + 0.5 * (prob[j] * (logp[j] - log_mid)).sum(axis=-1)
            js[p] += np.maximum(js_point, 0.0).sum()

    member_acc = correct / n_points
    return EnsembleMetrics(
        n=m,
        member_acc=tuple(float(a) for a in member_acc),
        member_acc_mean=float(member_acc.mean()),
        member_acc_std=float(member_acc.std(ddof=1)),
        ensemble_acc=ensemble_correct / n_points,
        disagreement=float(disagree.mean() / n_points),
        kl=float(kl.mean() / (2 * n_points)),
        js=float(js.mean() / n_points),
        kl_one_way=float(kl_forward.mean() / n_points),
    )


def _check(members: list[np.ndarray], labels: np.ndarray) -> None:
    if len(members) < 2:
        raise UserError(f"an ensemble needs at least 2 members, got {len(members)}; pass more prediction files")
    if labels.ndim != 1 or labels.shape[0] == 0:
        raise UserError(f"labels must be a non-empty 1-D array, got shape {tuple(labels.shape)}; regenerate the predictions")
    if not np.issubdtype(labels.dtype, np.integer):
        raise UserError(f"labels must be integers, got {labels.dtype}; regenerate the predictions")
    first = members[0]
    for i, x in enumerate(members):
        if x.ndim != 2 or x.shape != first.shape or x.shape[0] != labels.shape[0]:
            raise UserError(
                f"member {i} logits have shape {tuple(x.shape)}, expected {(labels.shape[0], *first.shape[1:2])} like member 0; "
                "all members must be evaluated on the same test set"
            )
        if not np.isfinite(x).all():
            raise UserError(f"member {i} logits contain NaN or inf; the model diverged, retrain it")
    if labels.min() < 0 or labels.max() >= first.shape[1]:
        raise UserError(f"labels must lie in [0, {first.shape[1]}); the predictions do not match their labels")
