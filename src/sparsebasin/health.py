"""Whether a finished training run learned anything: the one place for the criteria and their words.

A run whose loss became NaN or inf stops (``errors.TrainingDiverged``) and
writes no result. A run can also finish with finite numbers and still be
useless: collapsed to one class, or with a test loss that blew up. Such a run
is kept (it is a fact about that setting) but marked in its result.json::

    "health": {"status": "ok" | "chance" | "exploded", "reasons": ["<one sentence each>"]}

``status`` is "ok" with ``reasons == []`` when neither criterion holds.

Criteria (``assess``):

- **exploded**: the final test loss is not finite, or above
  ``EXPLODED_FACTOR`` (10) times ln(num_classes). A model that predicts the
  uniform distribution scores exactly ln(K); an over-confident but trained
  model can exceed it a few times over (overfitting raises the test loss while
  accuracy stays high), but ten times over means the logits are
  meaningless. For 10 classes the limit is 23.0, for 1000 it is 69.1.
- **chance**: the final test accuracy is not significantly above what a
  constant predictor scores. That level is the share of the most frequent
  class in the test labels when they are known (a model collapsed to one
  class scores exactly that: 19.6% on SVHN, not 10%), else 1/num_classes.
  "Significantly" is a one-sided exact binomial test at ``CHANCE_ALPHA``
  (0.001): the run is flagged when P(X >= correct | n_test, chance) > alpha,
  i.e. when a model guessing at chance would reach its score at least once
  in a thousand. The margin therefore follows the test-set size: on 10,000
  CIFAR-10 images a run is flagged below about 11.0%; on 100 test examples
  of 10 classes below 21%, where a sharper claim is not supported by the
  data. A run below chance is flagged too.

When both hold, the status is "exploded" (the stronger statement) and both
reasons are listed. ``status_of`` reads the status back (a result.json written
before this key existed is "ok"), and ``LABEL`` holds the words tables,
figures, scorecard and summary print for each non-ok status, so they all say
the same thing. ``"nonfinite"`` is the label of a measured value that came out
NaN/inf (a barrier, a curve point): written as JSON null with a reason.

Torch-free: analysis modules import it.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

OK, CHANCE, EXPLODED, NONFINITE = "ok", "chance", "exploded", "nonfinite"
STATUSES = (OK, CHANCE, EXPLODED)

EXPLODED_FACTOR = 10.0
CHANCE_ALPHA = 1e-3

LABEL = {
    CHANCE: "dead (chance accuracy)",
    EXPLODED: "diverged (exploded loss)",
    NONFINITE: "diverged (non-finite)",
}


def _finite(x: Any) -> bool:
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def binomial_sf(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p), exactly (log-space sum; fine for n in the millions)."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    if p <= 0.0:
        return 0.0
    if p >= 1.0:
        return 1.0
    lp, lq = math.log(p), math.log1p(-p)
    lgn = math.lgamma(n + 1)

    def logpmf(i: int) -> float:
        return lgn - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * lp + (n - i) * lq

    # Terms decrease past the mode; sum from k upwards until they stop mattering.
    total, i = 0.0, k
    first = logpmf(k)
    mode = int((n + 1) * p)
    start_max = first if k >= mode else logpmf(mode)
    while i <= n:
        term = logpmf(i)
        total += math.exp(term - start_max)
        if i > mode and term - start_max < -50:
            break
        i += 1
    return min(1.0, total * math.exp(start_max))


def chance_level(num_classes: int, class_counts: Mapping[Any, int] | list[int] | None = None) -> float:
    """What a constant predictor scores: the most frequent test class's share, else 1/num_classes."""
    counts = list(class_counts.values()) if isinstance(class_counts, Mapping) else list(class_counts or [])
    n = sum(int(c) for c in counts)
    uniform = 1.0 / max(int(num_classes), 1)
    return max(uniform, max(int(c) for c in counts) / n) if n else uniform


def chance_threshold(n_test: int, chance: float, alpha: float = CHANCE_ALPHA) -> float:
    """The lowest accuracy on ``n_test`` examples that is significantly above ``chance`` (one-sided)."""
    lo, hi = 0, n_test + 1
    while lo < hi:  # smallest k with P(X >= k) <= alpha
        mid = (lo + hi) // 2
        if binomial_sf(mid, n_test, chance) <= alpha:
            hi = mid
        else:
            lo = mid + 1
    return lo / n_test if n_test else 1.0


def assess(*, test_acc: Any, test_loss: Any, num_classes: int, n_test: int,
           class_counts: Mapping[Any, int] | list[int] | None = None) -> dict:
    """The ``health`` entry of a result.json (see the module docstring for the criteria)."""
    k = max(int(num_classes), 2)
    reasons: list[str] = []
    status = OK
    limit = EXPLODED_FACTOR * math.log(k)
    if not _finite(test_loss):
        status = EXPLODED
        reasons.append(f"the final test loss is {test_loss} (not finite)")
    elif float(test_loss) > limit:
        status = EXPLODED
        reasons.append(f"the final test loss {float(test_loss):.4g} is above {EXPLODED_FACTOR:g} x ln({k}) = "
                       f"{limit:.3g}")
    chance = chance_level(k, class_counts)
    n = int(n_test)
    if not _finite(test_acc):
        status = status if status != OK else CHANCE
        reasons.append(f"the final test accuracy is {test_acc} (not finite)")
    elif n > 0:
        correct = round(float(test_acc) * n)
        p = binomial_sf(correct, n, chance)
        if p > CHANCE_ALPHA:
            status = status if status != OK else CHANCE
            reasons.append(f"the final test accuracy {float(test_acc):.2%} on {n} examples is not significantly "
                           f"above chance ({chance:.2%}; one-sided binomial p = {p:.2g} > {CHANCE_ALPHA:g})")
    return {"status": status, "reasons": reasons}


def status_of(result: Mapping | None) -> str:
    """"ok" | "chance" | "exploded" for a result.json dict (no ``health`` key: written before it, "ok")."""
    health = (result or {}).get("health") if isinstance(result, Mapping) else None
    status = health.get("status") if isinstance(health, Mapping) else None
    return status if status in STATUSES else OK


def label_of(status: str) -> str | None:
    """The words for a non-ok status (None for "ok")."""
    return LABEL.get(status)


def warning_line(run_name: str, health: Mapping) -> str | None:
    """The one log line for a flagged run, or None for a healthy one."""
    status = health.get("status", OK)
    if status == OK:
        return None
    return f"warning: {run_name}: {LABEL[status]}: " + "; ".join(health.get("reasons") or [])


# ------------------------------------------------- non-finite measurements --

def nonfinite_paths(obj: Any, prefix: str = "") -> list[str]:
    """Dotted paths of every non-finite float in nested dicts/lists (list items as ``name.3``)."""
    out: list[str] = []
    if isinstance(obj, float):
        if not math.isfinite(obj):
            out.append(prefix)
    elif isinstance(obj, Mapping):
        for k, v in obj.items():
            out += nonfinite_paths(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            out += nonfinite_paths(v, f"{prefix}.{i}" if prefix else str(i))
    return out



def describe(value: Any) -> str:
    """'NaN', 'inf' or '-inf' for a non-finite float."""
    v = float(value)
    return "NaN" if math.isnan(v) else ("inf" if v > 0 else "-inf")
