"""Linear mode connectivity: interpolation, BN reset, REPAIR, barriers and the plane through three models.

Interpolation. ``theta(alpha) = (1 - alpha) theta_A + alpha theta_B`` for every
floating tensor of the state dict (weights, biases, BN affine parameters and
running statistics); integer buffers (``num_batches_tracked``) come from B.
alpha = 0 is A (or pi(A)), alpha = 1 is B. Each point is evaluated in up to
three modes:

- ``plain``: as is (BN uses the interpolated running statistics);
- ``bn_reset``: BN running statistics recomputed on training data
  (``reset_batches`` batches of a seeded random sample of the whole split, no
  augmentation, momentum=None, i.e. a plain average). For a model without
  BatchNorm this equals ``plain`` and the plain numbers are reported under
  both names;
- ``repair`` (Jordan et al. 2023, REPAIR): at every correction point, the
  pre-activation of each matched layer (a BN output in BN nets; a conv/linear
  output other than the classifier in BN-free nets), each channel's mean and
  std are rescaled to ``(1 - alpha) stat_A + alpha stat_B``, the endpoints'
  statistics measured in eval mode on the same training sample. It is done by
  a per-channel affine correction (a BatchNorm with weight = target std and
  bias = target mean) inserted by forward hook after each point; its statistics
  are collected in train mode in one pass, so each layer is corrected before
  the next is measured, then it runs in eval mode. In a BN net this comes out
  close to a BN reset;
- ``repair_block`` (REPAIR's own procedure for BN nets, and where the paper's
  code corrects): BN statistics reset first, at the endpoints and at every
  point; the endpoints' statistics are measured in train mode at each residual
  block's output (after the addition and ReLU), and the corrections sit there.
  Networks without residual blocks (MLP, VGG) use the ``repair`` points.

Data-parallel (under torchrun every rank runs the same points): each rank
takes its shard of every batch, BatchNorm in train mode (BN reset, REPAIR's
corrections and block statistics) normalises over the global batch
(sparsebasin.syncbn), and the sums are all-reduced, so each point's numbers
are one process's up to summation order.

Evaluation is fp32 whatever the training precision, and a split evaluated on
``eval_batches`` batches uses a seeded random sample of it, not its first
batches (ImageNet's train and val trees are stored class by class).
``train_examples`` evaluates the train split alone on a seeded sample of that
many examples (the test split stays whole): ImageNet's 1.28M training images
at each of 66 points would be about 20 hours of JPEG decoding. Every sample is
recorded (``samples``: seed, examples, of, classes).

Barriers. For each (mode, permuted, split), with L(alpha) the mean loss:
``loss_barrier = max_alpha L(alpha) - ((1 - alpha) L(0) + alpha L(1))``, the
``error_barrier`` likewise with the 0-1 error (1 - accuracy). Both are >= 0
because the endpoints contribute 0. A point whose loss is not finite (the
model's outputs overflow there: huge weights, a diverged REPAIR or BN reset)
is recorded with loss, acc and error None (empty CSV cells), and its curve's
barriers are None with a reason (``barriers(rows, nonfinite)``), never a
number.

Interpolation CSV (one row per alpha x mode x permuted x split):
``alpha, mode, permuted, split, loss, acc, error`` + one column per tag.
Barriers JSON: ``{"barriers": [{mode, permuted, split, loss_barrier,
error_barrier, alpha_loss_max, alpha_error_max, loss_a, loss_b, error_a,
error_b}, ...], "nonfinite": {"barriers.<i>.<field>": reason}, "tags",
"provenance", ...}``.

Plane (Garipov et al. 2018). Anchors theta_0 (origin), theta_1 (p1), theta_2
(p2); orthonormal basis over the trainable parameters: ``e1 = (theta_1 -
theta_0)/|theta_1 - theta_0|``, ``e2`` = the component of ``theta_2 - theta_0``
orthogonal to e1, normalised. A point (u, v) is ``theta_0 + u e1 + v e2``,
computed as the affine combination ``(1 - b1 - b2) theta_0 + b1 theta_1 + b2
theta_2`` of the whole state dicts (so BN buffers follow; running_var is
clamped at 0 off the triangle, and the default mode ``bn_reset`` recomputes
them anyway). Anchor coordinates: origin (0, 0), p1 (|theta_1 - theta_0|, 0),
p2 (<theta_2 - theta_0, e1>, |component orthogonal to e1|). The grid is
``grid`` x ``grid`` points spanning the anchors' bounding box enlarged by
``margin`` times its extent on each side.

Plane CSV (one row per point x split): ``point, u, v, mode, split, loss, acc,
error`` + tag columns, where ``point`` is empty for grid points and
``origin``, ``p1``, ``p2`` for the three anchors (evaluated at their exact
coordinates, so a plot can mark them). ``mode`` is plain or bn_reset.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

import torch
from torch import nn

from .. import device as devices
from .. import distributed
from ..errors import UserError
from .apply import permute_state
from .matching import unit_matrix
from .spec import PermutationSpec

MODES = ("plain", "bn_reset", "repair", "repair_block")
# One line per mode, for captions and logs.
MODE_DESCRIPTIONS = {
    "plain": "the interpolated weights and BatchNorm statistics as they are",
    "bn_reset": "BatchNorm statistics recomputed on a training sample at each point",
    "repair": "REPAIR: every BatchNorm output (or pre-activation) rescaled to the interpolated endpoint statistics",
    "repair_block": "REPAIR after a BN reset, corrected at each residual block's output (REPAIR's and the "
                    "paper's code)",
}
_BN = nn.modules.batchnorm._BatchNorm
# the option that sets each sample's size, for the warning when a split is smaller (sparsebasin.unhonoured)
SAMPLE_SETTING = {"statistics": "--reset-batches", "eval_train": "--train-eval-examples"}


@dataclass
class EvalConfig:
    """How to evaluate: batch size, batches per split (None = all), examples of the train split (None = as
    the other splits), train batches for BN reset / REPAIR, and the seed of the random samples those come
    from (recorded in ``samples``)."""

    device: torch.device = torch.device("cpu")
    batch_size: int = 500
    eval_batches: int | None = None
    reset_batches: int = 20
    sample_seed: int = 0
    train_examples: int | None = None
    samples: dict = field(default_factory=dict, repr=False, compare=False)
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def sample(self, ds, batches: int, what: str, examples: int | None = None):
        """A seeded random sample of ``ds``: ``examples`` examples, or ``batches`` batches' worth (computed once)."""
        from ..data import sample_split

        n = examples if examples is not None else batches * self.batch_size
        key = (id(ds), n)
        if key not in self._cache:
            setting = f"{SAMPLE_SETTING.get(what, '--eval-batches')} (the {what!r} sample)"
            self._cache[key] = sample_split(ds, n, seed=self.sample_seed, what=setting)
        sample, info = self._cache[key]
        self.samples[what] = info
        return sample


def parse_modes(text: str | Sequence[str]) -> list[str]:
    modes = [m.strip() for m in (text.split(",") if isinstance(text, str) else text) if m.strip()]
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise UserError(f"unknown mode(s) {bad or text!r}; choose from {', '.join(MODES)} (comma separated)")
    return list(dict.fromkeys(modes))


def alpha_grid(n: int) -> list[float]:
    if not isinstance(n, int) or n < 2:
        raise UserError(f"--alphas must be an integer >= 2 (grid points from 0 to 1), got {n!r}")
    return [i / (n - 1) for i in range(n)]


# ------------------------------------------------------------ combinations --

def combine_states(states: Sequence[Mapping[str, torch.Tensor]], coeffs: Sequence[float]) -> dict[str, torch.Tensor]:
    """sum_i c_i theta_i over floating tensors; integer buffers from the last state.

    BN running variances are clamped at 0 (affine combinations off the
    segment/triangle can make them negative).
    """
    out = {}
    for key, last in states[-1].items():
        if last.is_floating_point():
            acc = torch.zeros_like(last, dtype=torch.float64)
            for sd, c in zip(states, coeffs):
                acc += float(c) * sd[key].to(torch.float64)
            if key.endswith("running_var"):
                acc.clamp_(min=0)
            out[key] = acc.to(last.dtype)
        else:
            out[key] = last.clone()
    return out


def mix_state(sd_a: Mapping[str, torch.Tensor], sd_b: Mapping[str, torch.Tensor], alpha: float) -> dict[str, torch.Tensor]:
    """(1 - alpha) A + alpha B."""
    return combine_states([sd_a, sd_b], [1.0 - alpha, alpha])


# ---------------------------------------------------------------- data passes --

def _train_batches(ds, cfg: EvalConfig) -> Iterable:
    from ..data import batches

    sample = cfg.sample(ds, cfg.reset_batches, "statistics")
    n = len(sample)
    if n < 2:
        raise UserError(f"BN reset and REPAIR estimate statistics over a batch: they need at least 2 training "
                        f"examples, got {n}; raise --train-subset or --reset-batches")
    if n % cfg.batch_size == 1:  # a last batch of one example: train-mode BatchNorm cannot normalise it
        sample = sample.subset(n - 1)
        cfg.samples["statistics"] = {**cfg.samples.get("statistics", {}), "examples": n - 1,
                                     "dropped_last_single_example": True}
    yield from batches(sample, cfg.batch_size, shuffle=False, augment=False, device=cfg.device,
                       shard=distributed.batch_shard())


def _global_batchnorm(model: nn.Module) -> nn.Module:
    """Data-parallel: BatchNorm layers that normalise (and average) over the global batch in train mode
    (in place, idempotent; a forward hook on a swapped-out layer would no longer fire)."""
    if distributed.active():
        from ..syncbn import convert

        convert(model)
    return model


def has_bn(model: nn.Module) -> bool:
    return any(isinstance(m, _BN) for m in model.modules())


@torch.no_grad()
def reset_bn_stats(model: nn.Module, train_ds, cfg: EvalConfig) -> bool:
    """Recompute every BN's running statistics on training data; False if the model has no BN."""
    bns = [m for m in _global_batchnorm(model).modules() if isinstance(m, _BN)]
    if not bns:
        return False
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the reset batches
    conv = devices.is_conv_model(model)
    model.train()
    seen = 0
    try:
        for x, _ in _train_batches(train_ds, cfg):
            model(devices.to_input(x, cfg.device, conv))
            seen += 1
    finally:
        for m, mom in zip(bns, momenta):
            m.momentum = mom
        model.eval()
    if seen == 0:
        raise UserError("BN reset saw no training batches; check --train-subset and --reset-batches")
    return True


def repair_points(model: nn.Module, spec: PermutationSpec) -> list[str]:
    """Module names whose outputs REPAIR corrects: BN outputs, or (BN-free) every permuted conv/linear."""
    if has_bn(model):
        return [n for n, m in model.named_modules() if isinstance(m, _BN)]
    return [
        n for n, m in model.named_modules()
        if isinstance(m, (nn.Conv2d, nn.Linear)) and spec.axes[f"{n}.weight"][0] is not None
    ]


def block_points(model: nn.Module) -> list[str]:
    """The residual blocks (modules with a ``shortcut`` or ``downsample`` branch), input to output."""
    return [n for n, m in model.named_modules() if n and (hasattr(m, "shortcut") or hasattr(m, "downsample"))]


@torch.no_grad()
def channel_stats(model: nn.Module, points: Sequence[str], train_ds, cfg: EvalConfig,
                  train_mode: bool = False) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per-channel mean and std (float64) of each point's output on the reset batches (eval mode, or
    train mode: BatchNorm normalising by batch statistics, running statistics left as they were)."""
    modules = dict(_global_batchnorm(model).named_modules())  # before the hooks: it swaps the BN modules
    sums: dict[str, list] = {}

    def hook(name):
        def fn(_m, _i, out):
            a = unit_matrix(out.float()).double()
            s = sums.setdefault(name, [0, 0.0, 0.0])
            s[0] += a.shape[0]
            s[1] = s[1] + a.sum(0)
            s[2] = s[2] + (a * a).sum(0)
        return fn

    handles = [modules[p].register_forward_hook(hook(p)) for p in points]
    conv = devices.is_conv_model(model)
    was = model.training
    bns = [m for m in model.modules() if isinstance(m, _BN)]
    saved = [(m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone()) for m in bns
             if m.track_running_stats] if train_mode else []
    model.train(train_mode)
    try:
        for x, _ in _train_batches(train_ds, cfg):
            model(devices.to_input(x, cfg.device, conv))
    finally:
        for h in handles:
            h.remove()
        for m, (mean, var, count) in zip([m for m in bns if m.track_running_stats], saved):
            m.running_mean.copy_(mean)
            m.running_var.copy_(var)
            m.num_batches_tracked.copy_(count)
        model.train(was)
    if not sums:
        raise UserError("REPAIR saw no training batches; check --train-subset and --reset-batches")
    out = {}
    for p, (n, s, sq) in sums.items():
        if distributed.active():  # the ranks' shards: the global sums (same order of points on every rank)
            count, s, sq = distributed.all_sum_many(torch.tensor([float(n)], device=s.device), s, sq)
            n = float(count)
        mean = s / n
        out[p] = (mean, (sq / n - mean * mean).clamp_min(0).sqrt())
    return out


class Repair:
    """Per-channel affine corrections after each point, fitted to target statistics.

    Use as a context manager around evaluation: hooks are removed on exit.
    """

    def __init__(self, model: nn.Module, targets: Mapping[str, tuple[torch.Tensor, torch.Tensor]]):
        self.model = model
        modules = dict(_global_batchnorm(model).named_modules())  # before the hooks: it swaps the BN modules
        self.corrections: dict[str, nn.Module] = {}
        self.handles = []
        dev = next(model.parameters()).device
        conv_net = devices.is_conv_model(model)
        for name, (mean, std) in targets.items():
            n = mean.numel()
            conv = conv_net and not isinstance(modules[name], (nn.Linear, nn.BatchNorm1d))  # a conv, BN2d or block
            bn = _global_batchnorm(nn.Sequential(nn.BatchNorm2d(n, momentum=None) if conv else
                                                 nn.BatchNorm1d(n, momentum=None)))[0]
            with torch.no_grad():
                bn.weight.copy_(std.float())
                bn.bias.copy_(mean.float())
            bn.to(dev)
            self.corrections[name] = bn
            self.handles.append(modules[name].register_forward_hook(lambda _m, _i, out, bn=bn: bn(out)))

    @torch.no_grad()
    def fit(self, train_ds, cfg: EvalConfig) -> "Repair":
        for bn in self.corrections.values():
            bn.reset_running_stats()
            bn.train()
        conv = devices.is_conv_model(self.model)
        self.model.eval()
        seen = 0
        for x, _ in _train_batches(train_ds, cfg):
            self.model(devices.to_input(x, cfg.device, conv))
            seen += 1
        if seen == 0:
            raise UserError("REPAIR saw no training batches; check --train-subset and --reset-batches")
        for bn in self.corrections.values():
            bn.eval()
        return self

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []

    def __enter__(self) -> "Repair":
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


def interpolate_stats(sa, sb, alpha: float) -> dict:
    return {p: ((1 - alpha) * sa[p][0] + alpha * sb[p][0], (1 - alpha) * sa[p][1] + alpha * sb[p][1]) for p in sa}


# ---------------------------------------------------------------- evaluation --

def evaluate_splits(model: nn.Module, eval_sets: Mapping[str, object], cfg: EvalConfig) -> dict[str, dict]:
    """loss, acc, error (fractions) per split, whole or on the seeded samples ``cfg`` asks for."""
    from ..evaluation import evaluate

    out = {}
    for split, ds in eval_sets.items():
        if split == "train" and cfg.train_examples is not None:
            ds = cfg.sample(ds, 0, "eval_train", examples=cfg.train_examples)
        elif cfg.eval_batches is not None:
            ds = cfg.sample(ds, cfg.eval_batches, f"eval_{split}")
        r = evaluate(model, ds, cfg.device, batch_size=cfg.batch_size)
        if r["n"] == 0:
            raise UserError(f"the {split} split gave no examples to evaluate; check --train-subset / --eval-batches")
        out[split] = {"loss": r["loss"], "acc": r["acc"], "error": 1.0 - r["acc"], "n": r["n"]}
    return out


def _snapshot(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in sd.items()}


def _load(model: nn.Module, sd: Mapping[str, torch.Tensor]) -> None:
    model.load_state_dict(sd)
    model.eval()


def evaluate_state(
    model: nn.Module,
    sd: Mapping[str, torch.Tensor],
    mode: str,
    train_ds,
    eval_sets: Mapping[str, object],
    cfg: EvalConfig,
    repair_targets: Mapping | None = None,
) -> dict[str, dict]:
    """Load ``sd`` into ``model`` and evaluate it in one mode."""
    _load(model, sd)
    if mode == "plain":
        return evaluate_splits(model, eval_sets, cfg)
    if mode == "bn_reset":
        reset_bn_stats(model, train_ds, cfg)
        return evaluate_splits(model, eval_sets, cfg)
    if mode in ("repair", "repair_block"):
        if repair_targets is None:
            raise ValueError("repair mode needs target statistics")
        if mode == "repair_block":
            reset_bn_stats(model, train_ds, cfg)
        with Repair(model, repair_targets) as rep:
            rep.fit(train_ds, cfg)
            return evaluate_splits(model, eval_sets, cfg)
    raise UserError(f"unknown mode {mode!r}; choose from {', '.join(MODES)}")


def interpolate_path(
    model: nn.Module,
    spec: PermutationSpec,
    sd_a: Mapping[str, torch.Tensor],
    sd_b: Mapping[str, torch.Tensor],
    alphas: Sequence[float],
    modes: Sequence[str],
    train_ds,
    eval_sets: Mapping[str, object],
    cfg: EvalConfig,
    permuted: bool,
    log=None,
    points=None,
) -> list[dict]:
    """Rows (alpha, mode, permuted, split, loss, acc, error) along A -> B.

    ``model`` is only a vessel: each point's weights are loaded into it.
    ``points`` (a ``pointlog.PointLog``) skips the alphas it holds and keeps
    each one evaluated.
    """
    sd_a, sd_b = _snapshot(sd_a), _snapshot(sd_b)  # they may alias the vessel's own tensors
    rows = []
    bn = has_bn(model)
    endpoint_stats = {}

    def point_key(alpha) -> str:
        return f"permuted={bool(permuted)} alpha={float(alpha)!r}"

    todo = [a for a in alphas if points is None or points.get(point_key(a)) is None]
    for mode in (m for m in modes if m in ("repair", "repair_block") and todo):
        blocks = block_points(model) if mode == "repair_block" else []
        sites = blocks or repair_points(model, spec)
        both = []
        for sd in (sd_a, sd_b):
            _load(model, sd)
            if mode == "repair_block" and blocks:
                reset_bn_stats(model, train_ds, cfg)
            both.append(channel_stats(model, sites, train_ds, cfg, train_mode=bool(blocks)))
        endpoint_stats[mode] = both
    for alpha in alphas:
        key = point_key(alpha)
        kept = points.get(key) if points is not None else None
        if kept is not None:
            rows += kept
            continue
        first = len(rows)
        sd = mix_state(sd_a, sd_b, alpha)
        done: dict[str, dict] = {}
        for mode in modes:
            if mode == "bn_reset" and not bn and "plain" in done:
                res = done["plain"]
            elif mode == "plain" and not bn and "bn_reset" in done:
                res = done["bn_reset"]
            else:
                targets = interpolate_stats(*endpoint_stats[mode], alpha) if mode in endpoint_stats else None
                res = evaluate_state(model, sd, mode, train_ds, eval_sets, cfg, targets)
            done[mode] = res
            for split, r in res.items():
                rows.append({"alpha": float(alpha), "mode": mode, "permuted": bool(permuted), "split": split,
                             **measured(r)})
            if log:
                log(f"alpha={alpha:.3f} mode={mode} permuted={permuted} " + " ".join(
                    f"{s}: loss={r['loss']:.4f} acc={r['acc']:.4f}" for s, r in res.items()))
        if points is not None:
            points.put(key, rows[first:], cfg.samples)
    return rows


def lmc(
    model: nn.Module,
    spec: PermutationSpec,
    sd_a: Mapping[str, torch.Tensor],
    sd_b: Mapping[str, torch.Tensor],
    perm: Mapping[str, torch.Tensor] | None,
    alphas: Sequence[float],
    modes: Sequence[str],
    train_ds,
    eval_sets: Mapping[str, object],
    cfg: EvalConfig,
    log=None,
    points=None,
) -> list[dict]:
    """The unpermuted path A -> B and, with ``perm``, also pi(A) -> B."""
    sd_a, sd_b = _snapshot(sd_a), _snapshot(sd_b)
    rows = interpolate_path(model, spec, sd_a, sd_b, alphas, modes, train_ds, eval_sets, cfg, permuted=False, log=log,
                            points=points)
    if perm is not None:
        sd_pa = permute_state(spec, perm, sd_a, source="checkpoint A")
        rows += interpolate_path(model, spec, sd_pa, sd_b, alphas, modes, train_ds, eval_sets, cfg, permuted=True,
                                 log=log, points=points)
    return rows


def _finite(x) -> bool:
    return x is not None and math.isfinite(float(x))


def measured(r: Mapping) -> dict:
    """One point's loss, acc and error as recorded: all three None (JSON null, an empty CSV cell) when the
    loss is not finite, since the model's outputs there overflowed and their argmax means nothing either."""
    if not all(_finite(r[k]) for k in ("loss", "acc", "error")):
        return {"loss": None, "acc": None, "error": None}
    return {"loss": r["loss"], "acc": r["acc"], "error": r["error"]}


def nonfinite_rows(rows: Sequence[Mapping], where: Sequence[str]) -> dict[str, str]:
    """{"loss": reason, ...} for the measured columns some rows could not hold (None), naming the points."""
    bad = [r for r in rows if not _finite(r.get("loss"))]
    if not bad:
        return {}
    points = ", ".join(" ".join(f"{k}={r[k]:.3g}" if isinstance(r[k], float) else f"{k}={r[k]}" for k in where
                                if r.get(k) not in (None, "")) for r in bad[:3])
    reason = (f"not finite at {len(bad)} of {len(rows)} points ({points}{', ...' if len(bad) > 3 else ''}): the "
              "model's outputs overflow there; written as empty cells")
    return {k: reason for k in ("loss", "acc", "error")}


def barriers(rows: Sequence[Mapping], nonfinite: dict | None = None) -> list[dict]:
    """Loss and error barriers per (mode, permuted, split); needs alpha 0 and 1 on the grid.

    A curve with a point that is not finite (None: ``measured``) has no barrier: the barrier, its alpha
    and a missing endpoint are None, and ``nonfinite`` (if given) gets ``{"barriers.<i>.<field>": reason}``
    for each, never a number (a 0.0 would read as "linearly connected").
    """
    groups: dict[tuple, list] = {}
    for r in rows:
        groups.setdefault((r["mode"], r["permuted"], r["split"]), []).append(r)
    out = []
    for (mode, permuted, split), rs in groups.items():
        rs = sorted(rs, key=lambda r: r["alpha"])
        if not (math.isclose(rs[0]["alpha"], 0.0) and math.isclose(rs[-1]["alpha"], 1.0)):
            raise UserError("the alpha grid must include 0 and 1 to compute a barrier")
        entry = {"mode": mode, "permuted": permuted, "split": split}
        for metric in ("loss", "error"):
            la, lb = rs[0][metric], rs[-1][metric]
            bad = [r["alpha"] for r in rs if not _finite(r[metric])]
            if bad:
                entry.update({f"{metric}_barrier": None, f"alpha_{metric}_max": None,
                              f"{metric}_a": la if _finite(la) else None, f"{metric}_b": lb if _finite(lb) else None})
                if nonfinite is not None:
                    at = ", ".join(f"{a:.3g}" for a in bad)
                    reason = (f"no finite {metric} at alpha = {at} ({mode}, "
                              f"{'permuted' if permuted else 'unpermuted'}, {split}): the model's outputs overflow "
                              "there, so the curve has no barrier")
                    for field in (f"{metric}_barrier", f"alpha_{metric}_max", f"{metric}_a", f"{metric}_b"):
                        if entry[field] is None:
                            nonfinite[f"barriers.{len(out)}.{field}"] = reason
                continue
            gaps = [(r[metric] - ((1 - r["alpha"]) * la + r["alpha"] * lb), r["alpha"]) for r in rs]
            gap, at = max(gaps)
            entry[f"{metric}_barrier"] = gap
            entry[f"alpha_{metric}_max"] = at
            entry[f"{metric}_a"] = la
            entry[f"{metric}_b"] = lb
        out.append(entry)
    return out


# ---------------------------------------------------------------------- plane --

@dataclass
class PlaneGeometry:
    """Anchor coordinates in the orthonormal (u, v) basis of the plane."""

    norm1: float  # |theta_1 - theta_0|: p1 = (norm1, 0)
    p2_u: float   # <theta_2 - theta_0, e1>
    p2_v: float   # |component of theta_2 - theta_0 orthogonal to e1|

    def anchors(self) -> dict[str, tuple[float, float]]:
        return {"origin": (0.0, 0.0), "p1": (self.norm1, 0.0), "p2": (self.p2_u, self.p2_v)}

    def coefficients(self, u: float, v: float) -> tuple[float, float, float]:
        """(c0, c1, c2) with theta_0 + u e1 + v e2 = c0 theta_0 + c1 theta_1 + c2 theta_2."""
        b2 = v / self.p2_v
        b1 = (u - b2 * self.p2_u) / self.norm1
        return 1.0 - b1 - b2, b1, b2


def plane_geometry(sd0, sd1, sd2, keys: Sequence[str]) -> PlaneGeometry:
    """Gram-Schmidt over the flattened ``keys`` tensors (float64)."""
    d1 = torch.cat([(sd1[k].double() - sd0[k].double()).flatten() for k in keys])
    d2 = torch.cat([(sd2[k].double() - sd0[k].double()).flatten() for k in keys])
    n1 = float(d1.norm())
    if n1 == 0:
        raise UserError("the origin and p1 checkpoints have identical weights; the plane is undefined")
    e1 = d1 / n1
    p2_u = float(d2 @ e1)
    p2_v = float((d2 - p2_u * e1).norm())
    if p2_v <= 1e-9 * max(n1, float(d2.norm())):
        raise UserError("the three checkpoints are (nearly) collinear; the plane is undefined")
    return PlaneGeometry(n1, p2_u, p2_v)


def plane_grid(geom: PlaneGeometry, grid: int, margin: float) -> list[tuple[float, float]]:
    if not isinstance(grid, int) or grid < 2:
        raise UserError(f"--grid must be an integer >= 2, got {grid!r}")
    pts = list(geom.anchors().values())
    us, vs = [p[0] for p in pts], [p[1] for p in pts]
    lo_u, hi_u, lo_v, hi_v = min(us), max(us), min(vs), max(vs)
    mu, mv = margin * (hi_u - lo_u), margin * (hi_v - lo_v)
    lo_u, hi_u, lo_v, hi_v = lo_u - mu, hi_u + mu, lo_v - mv, hi_v + mv
    return [
        (lo_u + (hi_u - lo_u) * i / (grid - 1), lo_v + (hi_v - lo_v) * j / (grid - 1))
        for j in range(grid) for i in range(grid)
    ]


def plane(
    model: nn.Module,
    sd0: Mapping[str, torch.Tensor],
    sd1: Mapping[str, torch.Tensor],
    sd2: Mapping[str, torch.Tensor],
    grid: int,
    margin: float,
    mode: str,
    train_ds,
    eval_sets: Mapping[str, object],
    cfg: EvalConfig,
    log=None,
    points=None,
) -> tuple[list[dict], PlaneGeometry]:
    """Evaluate the grid and the three anchors; rows (point, u, v, mode, split, loss, acc, error).

    ``points`` (a ``pointlog.PointLog``) skips the points it holds and keeps each one evaluated."""
    if mode not in ("plain", "bn_reset"):
        raise UserError(f"plane mode must be plain or bn_reset, got {mode!r}")
    sd0, sd1, sd2 = _snapshot(sd0), _snapshot(sd1), _snapshot(sd2)
    keys = [k for k, _ in model.named_parameters()]
    geom = plane_geometry(sd0, sd1, sd2, keys)
    where = [("grid", u, v) for u, v in plane_grid(geom, grid, margin)]
    where += [(name, u, v) for name, (u, v) in geom.anchors().items()]
    rows = []
    for i, (name, u, v) in enumerate(where):
        key = f"{i} {name} u={u!r} v={v!r}"
        kept = points.get(key) if points is not None else None
        if kept is not None:
            rows += kept
            continue
        sd = combine_states([sd0, sd1, sd2], geom.coefficients(u, v))
        res = evaluate_state(model, sd, mode, train_ds, eval_sets, cfg)
        new = [{"point": "" if name == "grid" else name, "u": u, "v": v, "mode": mode, "split": split,
                **measured(r)} for split, r in res.items()]
        rows += new
        if points is not None:
            points.put(key, new, cfg.samples)
        if log:
            log(f"[{i + 1}/{len(where)}] {name} u={u:.3f} v={v:.3f} " + " ".join(
                f"{s}: loss={r['loss']:.4f} err={r['error']:.4f}" for s, r in res.items()))
    return rows, geom


__all__ = [
    "MODES", "MODE_DESCRIPTIONS", "EvalConfig", "block_points", "parse_modes", "alpha_grid", "combine_states", "mix_state", "reset_bn_stats",
    "repair_points", "channel_stats", "Repair", "evaluate_splits", "evaluate_state", "interpolate_path", "lmc",
    "barriers", "measured", "nonfinite_rows", "PlaneGeometry", "plane_geometry", "plane_grid", "plane",
]
