"""Find the permutation aligning model A to model B.

Activation matching (the paper's method): forward hooks at each group's
matching point collect the unit activations of A and B on the same training
batches (fixed order, no augmentation; every spatial position of a conv map
is a sample), streamed into float64 sums. From them, per group, the
cross-correlation (Pearson, default) or cross-covariance (the paper's Eq. 1)
matrix, and ``scipy.optimize.linear_sum_assignment(maximize=True)``. Dead
units (zero variance) get correlation 0 with everything, never NaN.

Weight matching (Git Re-Basin): coordinate descent over groups, each step
solving one group's assignment given the others, in random group order,
until a full pass brings no improvement.

Data-parallel (torchrun): each rank streams its shard of every batch and
the sums are all-reduced, so every rank solves the same assignments.

Both return ``perm`` with ``apply(perm, A)`` aligned to B: ``perm[g][i]`` is
the unit of A placed at B's position ``i``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import nn

from .. import device as devices
from .. import distributed
from ..errors import UserError
from .spec import PermutationSpec

STATS = ("correlation", "covariance")


def unit_matrix(out: torch.Tensor) -> torch.Tensor:
    """(samples, units) view of a layer output: conv maps give one sample per position."""
    if out.dim() == 2:
        return out
    if out.dim() == 4:
        return out.permute(0, 2, 3, 1).reshape(-1, out.shape[1])
    return out.movedim(1, -1).reshape(-1, out.shape[1])


@dataclass
class CrossStats:
    """Running float64 sums for the activations of A (rows) and B (columns) of one group."""

    n: int
    sum_a: torch.Tensor
    sum_b: torch.Tensor
    sq_a: torch.Tensor
    sq_b: torch.Tensor
    cross: torch.Tensor

    @classmethod
    def zeros(cls, units: int, device: torch.device) -> "CrossStats":
        z = lambda *s: torch.zeros(*s, dtype=torch.float64, device=device)  # noqa: E731
        return cls(0, z(units), z(units), z(units), z(units), z(units, units))

    def update(self, a: torch.Tensor, b: torch.Tensor, rows: int = 1 << 16) -> None:
        """Add samples (N, C) of A and B, converted to float64 in chunks of ``rows``."""
        for s in range(0, a.shape[0], rows):
            ad = a[s:s + rows].double()
            bd = b[s:s + rows].double()
            self.sum_a += ad.sum(0)
            self.sum_b += bd.sum(0)
            self.sq_a += (ad * ad).sum(0)
            self.sq_b += (bd * bd).sum(0)
            self.cross.addmm_(ad.T, bd)
        self.n += a.shape[0]

    def all_sum(self) -> None:
        """The sums over every rank of a data-parallel run (identical on each rank afterwards)."""
        parts = [self.sum_a, self.sum_b, self.sq_a, self.sq_b, self.cross]
        count, *sums = distributed.all_sum_many(torch.tensor([float(self.n)], device=self.cross.device), *parts)
        self.n = int(count)
        for p, total in zip(parts, sums):
            p.copy_(total)

    def covariance(self) -> torch.Tensor:
        n = max(self.n, 1)
        return self.cross / n - torch.outer(self.sum_a / n, self.sum_b / n)

    def _std(self, s: torch.Tensor, sq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = max(self.n, 1)
        second = sq / n
        var = (second - (s / n) ** 2).clamp_min(0)
        dead = var <= 1e-12 * second  # constant units, including all-zero (dead ReLU) ones
        return var.sqrt(), dead

    def correlation(self) -> torch.Tensor:
        std_a, dead_a = self._std(self.sum_a, self.sq_a)
        std_b, dead_b = self._std(self.sum_b, self.sq_b)
        denom = torch.outer(std_a, std_b)
        corr = self.covariance() / torch.where(denom > 0, denom, torch.ones_like(denom))
        corr[dead_a, :] = 0.0
        corr[:, dead_b] = 0.0
        return corr.clamp_(-1.0, 1.0)

    def dead_units(self) -> tuple[int, int]:
        return int(self._std(self.sum_a, self.sq_a)[1].sum()), int(self._std(self.sum_b, self.sq_b)[1].sum())


class _Hooks:
    """Forward hooks at the matching points; ``on_output(group, (N, C) tensor)``."""

    def __init__(self, model: nn.Module, spec: PermutationSpec, on_output):
        modules = dict(model.named_modules())
        self.handles = []
        for g, (name, relu) in spec.match_points.items():
            if name not in modules:
                raise RuntimeError(f"matching point {name!r} of group {g} is not a module of the model")

            def hook(_m, _inp, out, g=g, relu=relu):
                out = out.float()
                if relu:
                    out = torch.relu(out)
                on_output(g, unit_matrix(out))

            self.handles.append(modules[name].register_forward_hook(hook))

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


@torch.no_grad()
def activation_statistics(
    model_a: nn.Module,
    model_b: nn.Module,
    spec: PermutationSpec,
    batches: Iterable,
    device: torch.device | str = "cpu",
    max_batches: int | None = None,
    chunk: int | None = None,
) -> tuple[dict[str, CrossStats], int, int]:
    """Stream A's and B's activations (eval mode) over ``batches`` into float64 sums.

    ``chunk`` splits each batch into forwards of at most that many examples
    (same sums, bounded memory). Returns (stats per group, batches used, examples used).
    """
    device = devices.resolve(device)
    conv = devices.is_conv_model(model_a)
    stats = {g: CrossStats.zeros(n, device) for g, n in spec.sizes.items()}
    pending: dict[str, torch.Tensor] = {}

    def store_a(g, a):
        pending[g] = a

    def update_b(g, b):
        a = pending.pop(g)
        if a.shape != b.shape:
            raise RuntimeError(f"group {g}: A gives {tuple(a.shape)}, B gives {tuple(b.shape)}")
        stats[g].update(a, b)

    modes = (model_a.training, model_b.training)
    model_a.eval()
    model_b.eval()
    hooks = [_Hooks(model_a, spec, store_a), _Hooks(model_b, spec, update_b)]
    used = examples = 0
    try:
        for i, (x, _y) in enumerate(batches):
            if max_batches is not None and i >= max_batches:
                break
            step = chunk or x.shape[0]
            for s in range(0, x.shape[0], step):
                xc = devices.to_input(x[s:s + step], device, conv)
                model_a(xc)
                model_b(xc)
                if pending:
                    raise RuntimeError(f"groups {sorted(pending)} fired in A but not in B")
            used += 1
            examples += x.shape[0]
    finally:
        for h in hooks:
            h.remove()
        model_a.train(modes[0])
        model_b.train(modes[1])
    if used == 0:
        raise UserError("activation matching saw no data: the training set gave no batches (check --train-subset / --batches)")
    if distributed.active():  # each rank streamed its shard of every batch: the global sums, on every rank
        examples = int(distributed.all_sum_many(torch.tensor([float(examples)], device=device))[0])
        for st in stats.values():
            st.all_sum()
    return stats, used, examples


class NonFiniteStatistics(UserError):
    """The activations of a group overflowed: no assignment can be solved from them."""


def check_statistics(group: str, st: CrossStats, score: torch.Tensor) -> None:
    """A group's matching scores are finite, or one line saying which group and model overflowed."""
    if bool(torch.isfinite(score).all()):
        return
    bad = int((~torch.isfinite(score)).sum())
    which = [name for name, s in (("A", st.sq_a), ("B", st.sq_b)) if not bool(torch.isfinite(s).all())]
    raise NonFiniteStatistics(
        f"the activation statistics of group {group} are not finite ({bad} of {score.numel()} scores NaN or inf): "
        f"the activations of {' and '.join(which) or 'A or B'} overflow on the training sample")


def solve_assignment(score: torch.Tensor) -> torch.Tensor:
    """``score[a, b]`` between A's unit a and B's unit b -> perm with perm[b] = matched a."""
    s = score.detach().to("cpu", torch.float64).numpy()
    if not np.isfinite(s).all():
        raise RuntimeError("assignment scores contain NaN or inf")
    rows, cols = linear_sum_assignment(s.T, maximize=True)
    assert (rows == np.arange(s.shape[1])).all()
    return torch.from_numpy(cols.astype(np.int64))


def matched_correlation(stats: Mapping[str, CrossStats], perm: Mapping[str, torch.Tensor]) -> dict[str, float | None]:
    """Mean correlation between B's unit i and A's unit perm[i], per group (None where the activations
    overflowed: not a number)."""
    out = {}
    for g, st in stats.items():
        corr = st.correlation().cpu()
        value = float(corr[perm[g], torch.arange(corr.shape[1])].mean())
        out[g] = value if np.isfinite(value) else None
    return out


def _mean(values) -> float | None:
    values = list(values)
    return None if not values or any(v is None for v in values) else float(np.mean(values))


def correlation_summary(stats: Mapping[str, CrossStats], perm: Mapping[str, torch.Tensor]) -> dict:
    """Per-group and overall (unweighted mean over groups) matched correlation, before and after.

    A group whose activations overflowed has None, and so has the mean; ``nonfinite`` says why for each
    (``{"group_correlation.<g>": reason, "mean_correlation": reason, ...}``, empty when all are finite).
    """
    per = matched_correlation(stats, perm)
    ident = matched_correlation(stats, {g: torch.arange(st.sum_a.numel()) for g, st in stats.items()})
    dead = {g: st.dead_units() for g, st in stats.items()}
    nonfinite = {}
    for name, values in (("group_correlation", per), ("group_correlation_identity", ident)):
        for g, v in values.items():
            if v is None:
                nonfinite[f"{name}.{g}"] = (f"the activations of group {g} are not finite on the training sample "
                                            "(they overflow), so their correlation is not a number")
        if any(v is None for v in values.values()):
            mean = name.replace("group", "mean")
            nonfinite[mean] = f"{name} is not finite for some group, so its mean is not a number"
    return {
        "group_correlation": per,
        "mean_correlation": _mean(per.values()),
        "group_correlation_identity": ident,
        "mean_correlation_identity": _mean(ident.values()),
        "dead_units": {g: {"a": d[0], "b": d[1]} for g, d in dead.items()},
        "nonfinite": nonfinite,
    }


def activation_matching(
    model_a: nn.Module,
    model_b: nn.Module,
    spec: PermutationSpec,
    batches: Iterable,
    *,
    stat: str = "correlation",
    device: torch.device | str = "cpu",
    max_batches: int | None = None,
    chunk: int | None = None,
) -> tuple[dict[str, torch.Tensor], dict]:
    """Match A to B on activations; returns (perm, meta)."""
    if stat not in STATS:
        raise UserError(f"unknown matching statistic {stat!r}; use correlation or covariance")
    t0 = time.perf_counter()
    stats, used, examples = activation_statistics(model_a, model_b, spec, batches, device, max_batches, chunk)
    t1 = time.perf_counter()
    perm = {}
    for g, st in stats.items():
        score = st.correlation() if stat == "correlation" else st.covariance()
        check_statistics(g, st, score)
        perm[g] = solve_assignment(score)
    t2 = time.perf_counter()
    meta = {
        "method": "activation",
        "statistic": stat,
        "batches": used,
        "examples": examples,
        "seconds_statistics": t1 - t0,
        "seconds_assignment": t2 - t1,
        **correlation_summary(stats, perm),
    }
    return perm, meta


def _weight_keys(spec: PermutationSpec, sd: Mapping[str, torch.Tensor]) -> list[str]:
    """Trainable tensors: everything floating except BatchNorm running statistics."""
    return [
        k for k, t in sd.items()
        if k in spec.axes and t.is_floating_point() and not k.endswith(("running_mean", "running_var"))
        and any(g is not None for g in spec.axes[k])
    ]


def weight_matching(
    spec: PermutationSpec,
    sd_a: Mapping[str, torch.Tensor],
    sd_b: Mapping[str, torch.Tensor],
    *,
    seed: int = 0,
    max_iter: int = 100,
    keys: list[str] | None = None,
    init: Mapping[str, torch.Tensor] | None = None,
) -> tuple[dict[str, torch.Tensor], dict]:
    """Git Re-Basin weight matching: maximise sum_k <W_B[k], pi(W_A)[k]> by coordinate descent.

    Each step solves one group's linear assignment with every other group
    fixed; groups are visited in a random order (from ``seed``) per pass, until
    a pass improves nothing (or ``max_iter`` passes). Runs in float64 on CPU.
    """
    t0 = time.perf_counter()
    keys = keys if keys is not None else _weight_keys(spec, sd_b)
    a = {k: sd_a[k].detach().to("cpu", torch.float64) for k in keys}
    b = {k: sd_b[k].detach().to("cpu", torch.float64) for k in keys}
    perm = {g: (init[g].clone() if init is not None else torch.arange(n)) for g, n in spec.sizes.items()}
    rng = np.random.default_rng(seed)
    groups = spec.groups
    passes = 0
    for passes in range(1, max_iter + 1):
        improved = False
        for gi in rng.permutation(len(groups)):
            g = groups[gi]
            n = spec.sizes[g]
            score = torch.zeros(n, n, dtype=torch.float64)  # [B unit, A unit]
            for key, axis in spec.group_axes[g]:
                if key not in a:
                    continue
                wa = a[key]
                for d, h in enumerate(spec.axes[key]):
                    if h is not None and d != axis:
                        wa = wa.index_select(d, perm[h])
                wa = wa.movedim(axis, 0).reshape(n, -1)
                wb = b[key].movedim(axis, 0).reshape(n, -1)
                score += wb @ wa.T
            new = solve_assignment(score.T)
            rows = torch.arange(n)
            old_val = float(score[rows, perm[g]].sum())
            new_val = float(score[rows, new].sum())
            if new_val > old_val + 1e-12 * max(abs(old_val), 1.0):
                improved = True
                perm[g] = new
        if not improved:
            break
    objective = sum(
        float((_permuted(spec, perm, k, a[k]) * b[k]).sum()) for k in keys
    )
    meta = {
        "method": "weight",
        "statistic": "weights",
        "passes": passes,
        "objective": objective,
        "seed": seed,
        "seconds_matching": time.perf_counter() - t0,
    }
    return perm, meta


# ---------------------------------------------------------------- methods --
# A matching method is one function ``(job) -> (perm, meta)`` over a ``MatchJob`` (the two models, their
# state dicts, the spec, the training batches on demand, the options and the device), registered in METHODS
# with whether it reads training data to find the permutation. ``symmetry.align`` dispatches on the name; the
# step's --method choices and the workflow's ``match.method`` enum list these names. A new method is a function
# and an entry here, its name in the config schema, and its test.


@dataclass
class MatchJob:
    model_a: nn.Module
    model_b: nn.Module
    sd_a: Mapping[str, torch.Tensor]
    sd_b: Mapping[str, torch.Tensor]
    spec: PermutationSpec
    batches: Callable[[], Iterable]  # the seeded training sample, loaded when a method asks for it
    opts: Any  # align.MatchOptions
    device: torch.device


def _by_activations(job: MatchJob) -> tuple[dict, dict]:
    """The paper's: each group's units matched on the correlation (or covariance) of their activations."""
    return activation_matching(job.model_a, job.model_b, job.spec, job.batches(), stat=job.opts.stat,
                               device=job.device, max_batches=job.opts.batches, chunk=job.opts.chunk)


def _by_weights(job: MatchJob) -> tuple[dict, dict]:
    """Git Re-Basin's: no data to find it; the correlations it reports are then measured on the same sample."""
    perm, meta = weight_matching(job.spec, job.sd_a, job.sd_b, seed=job.opts.seed, max_iter=job.opts.max_iter)
    if job.opts.batches > 0:
        stats, used, examples = activation_statistics(job.model_a, job.model_b, job.spec, job.batches(),
                                                      job.device, job.opts.batches, job.opts.chunk)
        meta.update(batches=used, examples=examples, **correlation_summary(stats, perm))
    else:
        meta.update(batches=0, examples=0)
    return perm, meta


@dataclass(frozen=True)
class Method:
    find: Callable[[MatchJob], tuple[dict, dict]]
    needs_data: bool  # reads training activations to find the permutation (its --batches must be >= 1)


METHODS: dict[str, Method] = {
    "activation": Method(_by_activations, needs_data=True),
    "weight": Method(_by_weights, needs_data=False),
}


def _permuted(spec: PermutationSpec, perm: Mapping[str, torch.Tensor], key: str, t: torch.Tensor) -> torch.Tensor:
    for d, h in enumerate(spec.axes[key]):
        if h is not None:
            t = t.index_select(d, perm[h])
    return t


__all__ = [
    "STATS", "METHODS", "Method", "MatchJob", "CrossStats", "activation_statistics", "activation_matching",
    "weight_matching",
    "solve_assignment", "matched_correlation", "correlation_summary", "unit_matrix",
]
