"""Which IMP rounds to run for a set of target sparsities, and what they cost.

Rounds are described by sparsity alone (no weight counts), so the workflow can
import :func:`imp_schedule` to know every output file name before anything
runs. Round ``i`` of a chain sits at the nominal sparsity ``1 - (1 - rate)**i``
(each round prunes ``rate`` of the remaining weights); a *branch* prunes from
the deepest chain state strictly below a target to exactly the target. Without
``chain`` every target gets its own chain (the paper's one IMP run per
target); with it one chain serves all targets. Because pruning and
fine-tuning are deterministic, the per-target chains repeat the shared
chain's rounds, so both options give the same masks on CPU; ``chain`` only
saves the repeated work.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable

from ..errors import UserError
from ..options import option

IMP_MODES = ("ft", "rewind")  # fine-tune each round (IMP-FT), or rewind to epoch k and retrain


@dataclass(frozen=True)
class IMPOptions:
    """How IMP prunes: ``rate`` of the remaining weights per round; ``mode`` ft (fine-tune each round, IMP-FT)
    or rewind (rewind to the ``rewind`` checkpoint, IMP with rewinding); ``chain``: one chain through every
    target; which weights (glob patterns ``include`` / ``exclude``, default the card's prunable set).

    ``rate`` and ``mode`` are declared options (``options.option``): the ``prune`` step's flags, the config's
    ``prune`` section (the plan passes what it sets) and the IMP key derive from them; the paths and globs
    stay the step's own flags (``--rewind``, ``--chain``, ``--prune-include``/``--prune-exclude``)."""

    rate: float = option("fraction of the remaining prunable weights removed per round", "fraction", 0.2)
    mode: str = option("ft: fine-tune after each round (IMP-FT); rewind: reset survivors to --rewind and retrain",
                       choices=IMP_MODES, default="ft")
    rewind: str | Path | None = None
    chain: bool = True
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()


# A nominal round sparsity within this of a target counts as the target itself
# (1 - 0.8**2 is 0.35999999999999993, not 0.36).
TOL = 1e-9
# More IMP rounds than this is a typo in the rate, not an experiment: the paper needs 16 (rate 0.2 to 0.97).
MAX_ROUNDS = 100
_LABEL = re.compile(r"0\.\d+")


def fmt_sparsity(s: float) -> str:
    """The S{s} directory label: ``0.8 -> "0.8"``, ``0.97 -> "0.97"`` (6 significant digits)."""
    return f"{float(s):g}"


def label_error(s: float) -> str | None:
    """Why ``s`` cannot name an S{label} directory (None when it can): the label must be a fraction
    strictly between 0 and 1 that reads back as ``s`` itself, or two sparsities would share a directory."""
    label = fmt_sparsity(s)
    if not _LABEL.fullmatch(label):
        return (f"its directory label would be S{label}, not a sparsity strictly between 0 and 1 "
                "(labels keep 6 significant digits)")
    if float(label) != float(s):
        return f"its directory label S{label} names another sparsity (labels keep 6 significant digits); round it"
    return None


@dataclass(frozen=True)
class Round:
    """One pruning round: prune to ``sparsity``, then fine-tune (or rewind and retrain).

    ``parent`` is the round whose trained model is pruned (0 = the dense
    checkpoint), ``depth`` the number of rounds from the dense model,
    ``kind`` is ``"chain"`` (a 20%-of-the-rest round) or ``"branch"`` (capped
    exactly at ``target``); ``target`` is set on branches only.
    """

    round: int
    sparsity: float
    kind: str
    parent: int
    depth: int
    target: float | None = None

    @property
    def path(self) -> str:
        """The round checkpoint, relative to the prune output directory."""
        return round_path(self.round)

    @property
    def run_dir(self) -> str:
        return f"rounds/round{self.round}"

    def as_dict(self) -> dict:
        d = asdict(self)
        d["path"] = self.path
        d["run_dir"] = self.run_dir
        return d


def round_path(r: int) -> str:
    return f"rounds/round{int(r)}.pt"


def round_mask_path(r: int) -> str:
    return f"rounds/round{int(r)}_mask.pt"


def target_dir(s: float) -> str:
    return f"S{fmt_sparsity(s)}"


def check_targets(targets: Iterable[float], rate: float) -> list[float]:
    """Sorted unique targets in (0, 1); rate in (0, 1)."""
    try:
        rate = float(rate)
    except (TypeError, ValueError):
        raise UserError(f"--rate must be a number in (0, 1), got {rate!r}") from None
    if not 0.0 < rate < 1.0:
        raise UserError(f"--rate must be in (0, 1) (fraction of the remaining weights pruned per round), got {rate}")
    out = sorted({float(t) for t in targets})
    if not out:
        raise UserError("--targets is empty; give target sparsities such as 0.8,0.9")
    for t in out:
        if not 0.0 < t < 1.0:
            raise UserError(f"target sparsity {t} must be in (0, 1) (fraction of prunable weights removed)")
        why = label_error(t)
        if why:
            raise UserError(f"target sparsity {t}: {why}")
    labels = [fmt_sparsity(t) for t in out]
    if len(set(labels)) != len(labels):
        raise UserError(f"targets {out} collide after formatting as directory names {labels}; give distinct targets")
    return out


def nominal_sparsity(depth: int, rate: float) -> float:
    """1 - (1 - rate)**depth, rounded to 12 digits (0.2, not 0.19999999999999996)."""
    return round(1.0 - (1.0 - rate) ** depth, 12)


def parent_depth(target: float, rate: float) -> int:
    """Depth of the deepest chain round strictly below ``target`` (0 = dense)."""
    d = 0
    while nominal_sparsity(d + 1, rate) < target - TOL:
        d += 1
    return d


def imp_schedule(targets: Iterable[float], rate: float = 0.2, chain: bool = True) -> list[Round]:
    """Every round in execution order (round numbers 1..R are the file names).

    With ``chain``: chain rounds 1, 2, ... up to the deepest parent any target
    needs, each target's branch run right after its parent chain round.
    Without: for each target in turn, its own chain and its capped last round.
    """
    targets = check_targets(targets, rate)
    _check_depth(targets, float(rate))
    rounds: list[Round] = []

    def add(sparsity: float, kind: str, parent: int, depth: int, target: float | None) -> int:
        r = len(rounds) + 1
        rounds.append(Round(r, sparsity, kind, parent, depth, target))
        return r

    if chain:
        by_parent: dict[int, list[float]] = {}
        for t in targets:
            by_parent.setdefault(parent_depth(t, rate), []).append(t)
        last = 0
        for depth in range(0, max(by_parent) + 1):
            if depth > 0:
                last = add(nominal_sparsity(depth, rate), "chain", last, depth, None)
            for t in by_parent.get(depth, []):
                add(t, "branch", last, depth + 1, t)
    else:
        for t in targets:
            last = 0
            for depth in range(1, parent_depth(t, rate) + 1):
                last = add(nominal_sparsity(depth, rate), "chain", last, depth, None)
            add(t, "branch", last, parent_depth(t, rate) + 1, t)
    return rounds


def _check_depth(targets: list[float], rate: float) -> None:
    depth = parent_depth(max(targets), rate) + 1
    if depth > MAX_ROUNDS:
        raise UserError(f"rate {rate} needs {depth} IMP rounds to reach sparsity {max(targets)} (at most "
                        f"{MAX_ROUNDS}); raise the rate (the paper prunes 20% per round: 16 rounds to 0.97)")


def branch_rounds(schedule: list[Round]) -> dict[float, Round]:
    """target -> its capped round."""
    return {r.target: r for r in schedule if r.kind == "branch"}


def lineage(schedule: list[Round], r: int) -> list[int]:
    """Round numbers from the first round to ``r`` (the path from the dense model)."""
    by_num = {x.round: x for x in schedule}
    out = []
    while r:
        out.append(r)
        r = by_num[r].parent
    return out[::-1]


def training_epochs(schedule: list[Round], epochs_per_round: int) -> int:
    """Fine-tuning (or retraining) epochs the schedule costs."""
    return len(schedule) * int(epochs_per_round)
