"""Fused training: several small runs of one architecture trained as one stacked model.

Small models (every MNIST-1D MLP, ResNet20x1 on a large GPU) leave the
hardware idle: per-step Python and kernel-launch overhead dominates. A
*group* of R runs that share an architecture and a schedule (the three
branches of one cell, the seeds of one cell, ...) is trained here in one
process, each run with its own weights, mask, data order and optimizer state,
and each run's directory ends up with exactly the files the trainer writes
(``final.pt``, ``ckpt/epoch{k}.pt``, ``metrics.csv``, ``predictions.pt``,
``result.json``), equal to separate :func:`sparsebasin.training.fit` runs up
to float rounding.

Layout ("channel stacking"). The R runs live side by side in the channel
axis of one ordinary ``nn.Module``: every ``Conv2d`` becomes a grouped conv
with R times the channels (``groups`` times R), every ``BatchNorm2d`` a
BatchNorm over R times the channels (so statistics stay per run), every
``Linear`` a :class:`GroupedLinear` (a batched matmul over runs). All other
operations of the architectures here (ReLU, pooling, residual additions,
``flatten(1)``) act per channel, so the model's own ``forward`` runs
unchanged on input of shape ``(B, R*C, ...)`` and returns ``(B, R*classes)``.
Every parameter and buffer of the stacked model is the per-run tensors
stacked on a leading run axis and reshaped (``stacked.reshape(R, *shape)[r]``
is run r's tensor), so SGD (elementwise) on the stacked parameters is SGD on
each run. Two engines compute the gradients:

- ``grouped``: autograd through the stacked module (any supported model, any
  device; the run's precision on CUDA like the trainer, evaluation in fp32);
- ``mlp``: the MLP's forward and backward written out as batched matmuls
  (``baddbmm``/``bmm``) and autograd's own loss/ReLU backward kernels,
  without autograd, for the CPU, where per-op overhead is what fusing is
  meant to remove. With MKL its runs equal separate trainer runs bit for
  bit (batched and single matmuls agree exactly); the grouped engine's
  grouped convolutions and strided matmuls agree up to rounding.

Supported: every architecture whose card says ``fused`` (MLP, VGG11, ResNet20;
BatchNorm included: running statistics are
per run, and ``num_batches_tracked`` is kept per run). ResNet50 is refused
(it does not need fusing).

Masks: pruned weights start at exactly zero, their gradients are zeroed
every step, so weight decay and momentum leave them at exactly zero (the same
invariant as ``sparsebasin.masking``); at the end of every epoch the mask is
re-applied to weights and momentum buffers as a safety net.

Bookkeeping (fingerprints, resume, staged checkpoints, finished-run rules,
final writes) is ``session.train_runs``'s, the same code that serves a single
run; this module supplies the stacked engine. Resume: one scratch file per
group (``.fused.resume.pt`` in the first run's directory, or ``scratch=``)
written atomically after every epoch; a rerun with the same arguments
continues where it stopped (bit-identically on CPU). A diverging run stops
the whole group (TrainingDiverged naming the run), leaving no final outputs.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .. import checkpoints
from .. import device as devices
from ..errors import UserError
from .. import registry
from ..models import arch_of, model_spec
from .config import FUSED_ENGINES as ENGINES
from .config import TrainConfig
from .engines import HOST_CHECK_EVERY
from .session import Member, train_runs

SCRATCH_NAME = ".fused.resume.pt"
GroupMember = Member  # the name fused callers know


# --------------------------------------------------------------- stacking --

class GroupedLinear(nn.Module):
    """R independent ``Linear(in, out)`` layers: ``(B, R*in) -> (B, R*out)``.

    ``weight`` is ``(R, out, in)``, ``bias`` ``(R, out)``; run r's input is
    the r-th block of ``in`` features (the run-major order ``flatten(1)``
    gives in the channel-stacked layout).
    """

    def __init__(self, runs: int, in_features: int, out_features: int, bias: bool = True,
                 device: torch.device | str | None = None):
        super().__init__()
        self.runs, self.in_features, self.out_features = runs, in_features, out_features
        self.weight = nn.Parameter(torch.empty(runs, out_features, in_features, device=device))
        self.bias = nn.Parameter(torch.empty(runs, out_features, device=device)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        xr = x.reshape(b, self.runs, self.in_features).transpose(0, 1)  # (R, B, in)
        wt = self.weight.transpose(1, 2)
        # bmm/baddbmm are on autocast's lists: under bf16 autocast they cast like F.linear does.
        out = torch.baddbmm(self.bias.unsqueeze(1), xr, wt) if self.bias is not None else torch.bmm(xr, wt)
        return out.transpose(0, 1).reshape(b, self.runs * self.out_features)

    def extra_repr(self) -> str:
        return f"runs={self.runs}, in_features={self.in_features}, out_features={self.out_features}"


def _stacked_module(m: nn.Module, runs: int) -> nn.Module | None:
    """The R-run replacement of a module with its own parameters, or None for a container."""
    meta = torch.device("meta")
    if isinstance(m, nn.Conv2d):
        if m.padding_mode != "zeros":
            raise UserError(f"fused training supports zero-padded convolutions only (got padding_mode={m.padding_mode!r})")
        return nn.Conv2d(runs * m.in_channels, runs * m.out_channels, m.kernel_size, stride=m.stride,
                         padding=m.padding, dilation=m.dilation, groups=runs * m.groups, bias=m.bias is not None,
                         device=meta)
    if isinstance(m, nn.BatchNorm2d):
        return nn.BatchNorm2d(runs * m.num_features, eps=m.eps, momentum=m.momentum, affine=m.affine,
                              track_running_stats=m.track_running_stats, device=meta)
    if isinstance(m, nn.Linear):
        return GroupedLinear(runs, m.in_features, m.out_features, bias=m.bias is not None, device=meta)
    own = list(m.named_parameters(recurse=False)) + list(m.named_buffers(recurse=False))
    if own:
        raise UserError(
            f"fused training cannot stack a {type(m).__name__} (it holds {own[0][0]!r}); it supports models built "
            f"from Conv2d, BatchNorm2d and Linear layers ({', '.join(fusable())}); train this model with "
            "separate `train`/`sparse` runs"
        )
    return None


def stack_architecture(template: nn.Module, runs: int) -> nn.Module:
    """A copy of ``template`` whose layers hold ``runs`` runs each (on the meta device, uninitialised)."""
    model = copy.deepcopy(template).to("meta")

    def replace(parent: nn.Module) -> None:
        for name, child in parent.named_children():
            new = _stacked_module(child, runs)
            if new is None:
                replace(child)
            else:
                setattr(parent, name, new)

    top = _stacked_module(model, runs)
    if top is not None:
        return top
    replace(model)
    return model


def _is_count(key: str) -> bool:
    return key.endswith("num_batches_tracked")


class StackedModel:
    """R runs of one architecture as one channel-stacked module.

    ``module`` is an ordinary ``nn.Module`` (train/eval modes, autocast,
    ``parameters()`` for the optimizer); ``run_state_dict(r)`` gives run r's
    state dict with the template's keys, order and shapes.
    """

    def __init__(self, template: nn.Module, states: Sequence[Mapping[str, torch.Tensor]], device: torch.device):
        self.runs = len(states)
        if self.runs < 1:
            raise UserError("a fused group needs at least one run")
        self.template_sd = {k: v.detach().to("cpu") for k, v in template.state_dict().items()}
        self.keys = list(self.template_sd)
        self.shapes = {k: tuple(v.shape) for k, v in self.template_sd.items()}
        module = stack_architecture(template, self.runs).to_empty(device=device)
        target = module.state_dict()
        if set(target) != set(self.keys):  # pragma: no cover - guarded by _stacked_module
            raise UserError("fused training: the stacked model's keys differ from the model's; unsupported architecture")
        loaded = {}
        for k in self.keys:
            if _is_count(k):
                loaded[k] = torch.zeros_like(target[k], device="cpu")
            else:
                loaded[k] = torch.stack([s[k].detach().to("cpu") for s in states]).reshape(target[k].shape)
        module.load_state_dict(loaded)
        self.count_base = {k: [int(s[k]) for s in states] for k in self.keys if _is_count(k)}
        self.module = devices.prepare_model(module, device)
        self.device = device
        self.conv = devices.is_conv_model(self.module)

    # ----------------------------------------------------------- layouts --
    def stacked_input(self, x: torch.Tensor) -> torch.Tensor:
        """``(R, B, C, ...)`` per-run batches -> the module's ``(B, R*C, ...)`` input."""
        r, b = x.shape[:2]
        out = x.transpose(0, 1).reshape(b, r * x.shape[2], *x.shape[3:])
        return devices.to_input(out, self.device, self.conv)

    def logits(self, x: torch.Tensor, precision: str = "fp32") -> torch.Tensor:
        """``(R, B, ...)`` inputs -> ``(R, B, classes)`` float logits (current train/eval mode)."""
        r, b = x.shape[:2]
        with devices.autocast(self.device, precision):
            out = self.module(self.stacked_input(x))
        return out.float().reshape(b, r, -1).transpose(0, 1)

    # ------------------------------------------------------------ states --
    def run_state_dicts(self) -> list[dict[str, torch.Tensor]]:
        """Every run's state dict (CPU tensors, the template's keys in its order, shapes and dtypes)."""
        sd = {k: v.detach().to("cpu") for k, v in self.module.state_dict().items()}
        out = []
        for r in range(self.runs):
            d = {}
            for k in self.keys:
                if _is_count(k):
                    d[k] = torch.tensor(self.count_base[k][r] + int(sd[k]), dtype=self.template_sd[k].dtype)
                else:
                    d[k] = sd[k].reshape(self.runs, *self.shapes[k])[r].clone().contiguous()
            out.append(d)
        return out

    def run_state_dict(self, r: int) -> dict[str, torch.Tensor]:
        """Run r's state dict (see ``run_state_dicts``)."""
        return self.run_state_dicts()[r]

    def stack_masks(self, masks: Sequence[Mapping[str, torch.Tensor] | None]) -> list[tuple[nn.Parameter, torch.Tensor, torch.Tensor]]:
        """``[(stacked parameter, pruned bool, keep float)]`` for every key any run masks."""
        params = dict(self.module.named_parameters())
        keys = sorted({k for m in masks if m for k in m})
        out = []
        for k in keys:
            p = params[k]
            pruned = torch.stack([
                (~m[k].to("cpu").bool()) if (m and k in m) else torch.zeros(self.shapes[k], dtype=torch.bool)
                for m in masks
            ]).reshape(p.shape).to(p.device)
            if p.dim() == 4 and p.is_contiguous(memory_format=torch.channels_last):
                pruned = pruned.contiguous(memory_format=torch.channels_last)
            keep = (~pruned).to(p.dtype)
            if p.dim() == 4 and p.is_contiguous(memory_format=torch.channels_last):
                keep = keep.contiguous(memory_format=torch.channels_last)
            out.append((p, pruned, keep))
        return out


# -------------------------------------------------------------- optimizer --

class StackedSGD:
    """``torch.optim.SGD`` (momentum, dampening 0, weight decay, nesterov) working in place on the gradients.

    Per element it runs the very kernels ``torch.optim.SGD``'s single-tensor
    path runs (``grad.add(param, alpha=wd)``, ``buf.mul_(m).add_(grad)``,
    first buffer a copy of the gradient, ``param.add_(step, alpha=-lr)``),
    so the arithmetic is the trainer's; it only skips allocating a new
    tensor for the decayed gradient every step, which matters for the large
    stacked tensors. ``param_groups[0]["lr"]`` is what ``CosineSchedule`` sets.
    """

    def __init__(self, params, lr: float, momentum: float = 0.0, weight_decay: float = 0.0, nesterov: bool = False):
        self.params = list(params)
        self.param_groups = [{"lr": float(lr)}]
        self.momentum, self.weight_decay, self.nesterov = float(momentum), float(weight_decay), bool(nesterov)
        self.buffers: list[torch.Tensor | None] = [None] * len(self.params)

    @torch.no_grad()
    def step(self) -> None:
        lr = self.param_groups[0]["lr"]
        live = [(i, p) for i, p in enumerate(self.params) if p.grad is not None]
        if not live:
            return
        params = [p for _, p in live]
        grads = [p.grad for _, p in live]
        # The _foreach_ ops run the same per-tensor kernels in one call (less Python per step).
        if self.weight_decay != 0:
            torch._foreach_add_(grads, params, alpha=self.weight_decay)
        if self.momentum != 0:
            if any(self.buffers[i] is None for i, _ in live):
                for (i, _), g in zip(live, grads):
                    if self.buffers[i] is None:
                        self.buffers[i] = g.clone()
                    else:
                        self.buffers[i].mul_(self.momentum).add_(g)
            else:
                bufs = [self.buffers[i] for i, _ in live]
                torch._foreach_mul_(bufs, self.momentum)
                torch._foreach_add_(bufs, grads)
            bufs = [self.buffers[i] for i, _ in live]
            if self.nesterov:
                torch._foreach_add_(grads, bufs, alpha=self.momentum)
            else:
                grads = bufs
        torch._foreach_add_(params, grads, alpha=-lr)

    def momentum_buffer(self, p: torch.Tensor) -> torch.Tensor | None:
        for q, buf in zip(self.params, self.buffers):
            if q is p:
                return buf
        return None

    def state_dict(self) -> dict:
        return {"lr": self.param_groups[0]["lr"],
                "buffers": [None if b is None else b.detach().to("cpu", copy=True) for b in self.buffers]}

    def load_state_dict(self, state: dict) -> None:
        self.param_groups[0]["lr"] = float(state["lr"])
        bufs = state["buffers"]
        if len(bufs) != len(self.params):
            raise UserError("fused resume state does not fit the model; delete the scratch file and rerun")
        self.buffers = [None if b is None else b.to(p.device).clone().contiguous(memory_format=_memory_format(p))
                        for b, p in zip(bufs, self.params)]


def _memory_format(p: torch.Tensor) -> torch.memory_format:
    if p.dim() == 4 and p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format


# ---------------------------------------------------------------- engines --

class GroupedEngine:
    """Autograd through the channel-stacked module (any supported model and device)."""

    name = "grouped"

    def __init__(self, stacked: StackedModel, precision: str = "bf16"):
        self.stacked = stacked
        self.precision = precision

    def forward_backward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One training forward/backward on ``(R, B, ...)`` inputs, ``(R, B)`` labels.

        Sets ``.grad`` of every parameter (run r's part is the gradient of run
        r's mean cross-entropy); returns per-run loss ``(R,)`` and correct
        counts ``(R,)``, detached.
        """
        r, b = y.shape
        logits = self.stacked.logits(x, self.precision)  # (R, B, K)
        losses = F.cross_entropy(logits.reshape(r * b, -1), y.reshape(-1), reduction="none").view(r, b).mean(1)
        for p in self.stacked.module.parameters():
            p.grad = None
        losses.sum().backward()
        with torch.no_grad():
            correct = (logits.detach().argmax(2) == y).sum(1)
        return losses.detach(), correct

    @torch.no_grad()
    def eval_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.stacked.logits(x, "fp32")  # evaluation is fp32 whatever the training precision


class MLPEngine:
    """The MLP's forward and backward as batched matmuls over runs, without autograd (CPU).

    Each step calls the very kernels autograd would run for the stacked MLP
    (``baddbmm``; ``log_softmax``/``nll_loss`` and their backward kernels;
    ``bmm`` for weight gradients, ``sum`` over the batch for biases,
    ``bmm(dZ, W)`` and ``threshold_backward`` for ReLU), in the same order,
    so its numbers are the grouped engine's, which on the CPU match separate
    trainer runs bit for bit (tests/test_fused.py); it only skips building
    and walking the autograd graph, which is most of a small MLP's step.
    """

    name = "mlp"

    def __init__(self, stacked: StackedModel):
        self.stacked = stacked
        m = stacked.module
        self.layers: list[GroupedLinear] = list(m.hidden) + [m.head]
        for layer in self.layers:
            if not isinstance(layer, GroupedLinear) or layer.bias is None:
                raise UserError("the mlp engine needs the MLP with biases; use --engine grouped")

    def _forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        r, b = x.shape[:2]
        h = x.reshape(r, b, -1)
        acts = [h]
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            z = torch.baddbmm(layer.bias.unsqueeze(1), h, layer.weight.transpose(1, 2))
            h = z.relu_() if i < last else z
            acts.append(h)
        return acts

    @torch.no_grad()
    def forward_backward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r, b = y.shape
        acts = self._forward(x)
        logits = acts[-1]
        flat_y = y.reshape(-1)
        # Forward: F.cross_entropy(logits.reshape(R*B, C), y, reduction="none").view(R, B).mean(1).
        logp = torch._log_softmax(logits.reshape(r * b, -1), 1, False)
        nll, total_weight = torch.ops.aten.nll_loss_forward(logp, flat_y, None, 0, -100)
        losses = nll.view(r, b).mean(1)
        # Backward of losses.sum(): mean -> nll_loss -> log_softmax, autograd's kernels.
        g = torch.ones((r, b), dtype=logp.dtype, device=logp.device) / b
        g = torch.ops.aten.nll_loss_backward(g.reshape(-1), logp, flat_y, None, 0, -100, total_weight)
        g = torch.ops.aten._log_softmax_backward_data(g, logp, 1, logp.dtype).view(r, b, -1)
        correct = (logits.argmax(2) == y).sum(1)
        for i in range(len(self.layers) - 1, -1, -1):
            layer = self.layers[i]
            # = bmm(H^T, dZ)^T, autograd's form, bit for bit (MKL), without the transposing copy
            layer.weight.grad = torch.bmm(g.transpose(1, 2), acts[i])
            layer.bias.grad = g.sum(1)
            if i > 0:
                g = torch.ops.aten.threshold_backward(torch.bmm(g, layer.weight), acts[i], 0)
        return losses, correct

    @torch.no_grad()
    def eval_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self._forward(x)[-1]


def fusable() -> list[str]:
    """The architectures whose cards say fused training works."""
    return [n for n, c in registry.architectures().items() if c["fused"]]


def choose_engine(engine: str, template: nn.Module, device: torch.device) -> str:
    if engine not in ENGINES:
        raise UserError(f"unknown --engine {engine!r}; choose one of: {', '.join(ENGINES)}")
    cpu_engine = arch_of(template)["fused_engine_cpu"]
    if engine == "auto":
        return cpu_engine if device.type == "cpu" else "grouped"
    if engine == "mlp" and cpu_engine != "mlp":
        raise UserError(f"--engine mlp is for the MLP only (the model is {type(template).__name__}); use auto or grouped")
    return engine


# ------------------------------------------------------------------- data --

class StackedBatches:
    """Per-run training batches stacked to ``(R, B, ...)``, ``(R, B)``.

    Each run's batches are exactly those of ``sparsebasin.data.batches`` with
    its own ``data_seed``. Without augmentation (and for in-memory data) one
    gather serves all runs: each run's order is the same ``randperm`` of its
    (data_seed, epoch) generator and normalisation is elementwise, so the
    values are identical. With augmentation each run's iterator is used as is.
    """

    def __init__(self, ds: Any, batch_size: int, data_seeds: Sequence[int], augment: bool, device: torch.device,
                 drop_last: bool):
        from ..data import ArrayDataset

        self.ds, self.batch_size, self.data_seeds = ds, batch_size, [int(s) for s in data_seeds]
        self.augment, self.device, self.drop_last = augment, device, drop_last
        self.fast = isinstance(ds, ArrayDataset) and not (augment and ds.x.dim() == 4)

    def epoch(self, epoch: int):
        from ..data import batches, epoch_generator, normalise
        from ..data.base import batch_bounds, upload

        if not self.fast:
            its = [batches(self.ds, self.batch_size, shuffle=True, data_seed=s, epoch=epoch, augment=self.augment,
                           device=self.device, drop_last=self.drop_last) for s in self.data_seeds]
            for pairs in zip(*its):
                yield torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])
            return
        ds = self.ds
        n = len(ds)
        orders = torch.stack([torch.randperm(n, generator=epoch_generator(s, epoch)) for s in self.data_seeds])
        orders = upload(orders, ds.x.device)
        r = len(self.data_seeds)
        for lo, hi in batch_bounds(n, self.batch_size, self.drop_last):
            idx = orders[:, lo:hi]
            b = idx.shape[1]
            flat = idx.reshape(-1)
            xb = ds.x.index_select(0, flat).to(self.device, non_blocking=True)
            yb = ds.y.index_select(0, flat.to(ds.y.device)).to(self.device, non_blocking=True)
            x = normalise(xb, ds.info)
            yield x.reshape(r, b, *x.shape[1:]), yb.reshape(r, b)


@torch.no_grad()
def evaluate_stacked(engine, ds: Any, device: torch.device, batch_size: int, return_logits: bool = False) -> list[dict]:
    """``sparsebasin.evaluation.evaluate`` for every run at once (eval mode, same batches and sums)."""
    from ..data import batches

    module = engine.stacked.module
    runs = engine.stacked.runs
    was_training = module.training
    module.eval()
    sums = torch.zeros(3, runs, dtype=torch.float64, device=device)  # loss, top-1, top-5; read once (no per-batch sync)
    total = 0
    logits_all: list[torch.Tensor] = []
    labels_all: list[torch.Tensor] = []
    for x, y in batches(ds, batch_size, shuffle=False, augment=False, device=device):
        b = y.shape[0]
        out = engine.eval_logits(x.unsqueeze(0).expand(runs, *x.shape)).float()  # (R, B, K)
        k = min(5, out.shape[2])
        ys = y.view(1, b).expand(runs, b)
        losses = F.cross_entropy(out.reshape(runs * b, -1), ys.reshape(-1), reduction="none").view(runs, b).sum(1)
        c1 = (out.argmax(2) == ys).sum(1)
        c5 = (out.topk(k, dim=2).indices == ys.unsqueeze(2)).any(2).sum(1)
        sums += torch.stack([losses.double(), c1.double(), c5.double()])
        total += b
        if return_logits:
            logits_all.append(out)
            labels_all.append(y)
    module.train(was_training)
    loss_sum, correct, correct5 = sums.tolist()
    logits_all = [t.cpu() for t in logits_all]
    labels_all = [t.cpu() for t in labels_all]
    res = []
    for r in range(runs):
        d = {"loss": loss_sum[r] / max(total, 1), "acc": int(correct[r]) / max(total, 1),
             "top5": int(correct5[r]) / max(total, 1), "n": total}
        if return_logits:
            d["logits"] = torch.cat([t[r] for t in logits_all]) if logits_all else torch.empty(0)
            d["labels"] = torch.cat(labels_all) if labels_all else torch.empty(0, dtype=torch.long)
        res.append(d)
    return res


class StackedEngine:
    """The members of a fused group as one stacked model, for ``session.train_runs``."""

    def __init__(self, members: Sequence[Member], engine_name: str, cfg: TrainConfig, dev: torch.device,
                 train_ds: Any, augment: bool, drop_last: bool):
        self.dev = dev
        self.stacked = StackedModel(members[0].model, [m.model.state_dict() for m in members], dev)
        self.eng = MLPEngine(self.stacked) if engine_name == "mlp" else GroupedEngine(self.stacked, cfg.precision)
        self.module = self.stacked.module
        self.mask_pairs = self.stacked.stack_masks([m.mask for m in members])
        self.optimizer = StackedSGD(self.module.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                    weight_decay=cfg.weight_decay, nesterov=cfg.nesterov)
        self.data = StackedBatches(train_ds, cfg.batch_size, [m.data_seed for m in members], augment, dev, drop_last)
        self.check_every = HOST_CHECK_EVERY

    def load_scratch(self, state: dict) -> None:
        self.module.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])

    def scratch_model(self) -> dict:
        return self.module.state_dict()

    @torch.no_grad()
    def remask(self) -> None:
        """Pruned weights and their momentum to exactly zero (a safety net: gradients are masked every step)."""
        for p, pruned, _ in self.mask_pairs:
            p.masked_fill_(pruned, 0.0)
            buf = self.optimizer.momentum_buffer(p)
            if buf is not None:
                buf.masked_fill_(pruned, 0.0)

    def start(self) -> None:
        self.remask()

    def train(self) -> None:
        self.module.train()

    def batches(self, epoch: int):
        return self.data.epoch(epoch)

    def step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
        losses, correct = self.eng.forward_backward(x, y)
        for p, _, keep in self.mask_pairs:
            p.grad.mul_(keep)
        self.optimizer.step()
        return losses, correct, int(y.shape[1])

    def end_epoch(self) -> None:
        self.remask()

    def evaluate(self, test_ds: Any, batch_size: int, return_logits: bool) -> list[dict]:
        return evaluate_stacked(self.eng, test_ds, self.dev, batch_size, return_logits=return_logits)

    def state_dicts(self) -> list[dict]:
        return self.stacked.run_state_dicts()


# -------------------------------------------------------------------- fit --

def fit_fused(
    members: Sequence[Member],
    train_ds: Any,
    test_ds: Any,
    cfg: TrainConfig,
    *,
    model_cfg: dict,
    data_meta: dict,
    save_epochs=(),
    device: str | torch.device = "auto",
    progress: str = "auto",
    engine: str = "auto",
    scratch: str | Path | None = None,
    group_name: str | None = None,
    force: bool = False,
) -> list[dict]:
    """Train every member for ``cfg.epochs`` as one stacked model; write each member's run directory.

    Each member's directory gets what :func:`sparsebasin.training.fit` writes
    for it (same files, keys and columns); returns the result dicts in member
    order. ``metrics.csv``'s ``seconds`` is the member's share (1/R) of the
    group's epoch time (so ``train_seconds`` summed over a group is the
    group's cost) and ``images_per_s`` the group's rate (all runs' images
    per second of training). Members already finished with the same request
    are not retrained; the others are trained together.
    """
    members = list(members)
    if not members:
        raise UserError("fused training needs at least one run")
    model_cfg = model_spec(model_cfg)
    if not registry.architecture(model_cfg["name"])["fused"]:
        raise UserError(f"fused training supports {', '.join(fusable())}; {model_cfg['name']} runs are "
                        "trained separately (`train` / `sparse`)")
    template = members[0].model
    ref = {k: tuple(v.shape) for k, v in template.state_dict().items()}
    for m in members:
        got = {k: tuple(v.shape) for k, v in m.model.state_dict().items()}
        if got != ref or type(m.model) is not type(template):
            raise UserError(f"run {m.run_name} has another architecture than {members[0].run_name}; a fused group "
                            "must share model, width and dataset")
    engine_name = choose_engine(engine, template, devices.resolve(device))
    cfg = cfg.validate()

    def make_engine(todo, dev, train, augment, drop_last):
        return StackedEngine(todo, engine_name, cfg, dev, train, augment, drop_last)

    return train_runs(members, train_ds, test_ds, cfg, model_cfg=model_cfg, data_meta=data_meta,
                      make_engine=make_engine, engine_name=engine_name, save_epochs=save_epochs, device=device,
                      progress=progress, force=force, scratch=scratch, group_name=group_name)
