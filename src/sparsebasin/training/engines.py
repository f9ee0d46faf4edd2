"""The single-model engine: one model, ``torch.optim.SGD`` and a bound mask (what ``fit`` trains).

An engine is what ``session.train_runs`` drives: it owns the model(s), the
optimizer and the masks, and runs one optimisation step at a time. The
stacked engine for fused groups is ``training.fused.StackedEngine``.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F

from .. import compiling, distributed
from .. import device as devices
from ..evaluation import evaluate
from ..masking import BoundMask
from ..progress import log
from .config import TrainConfig

# A GPU queues work: the host looks at the loss every 25 steps, not after each (each look waits for the queue).
# benchmarks/gpu_check.py holds the training step to this: at most one host wait per HOST_CHECK_EVERY steps.
HOST_CHECK_EVERY = 25


class SingleEngine:
    """One run: forward, cross-entropy, backward, masked SGD step (pruned weights stay exactly zero)."""

    def __init__(self, member, cfg: TrainConfig, dev: torch.device, train_ds: Any, augment: bool, drop_last: bool):
        self.dev, self.train_ds, self.augment, self.drop_last = dev, train_ds, augment, drop_last
        self.batch_size, self.data_seed, self.precision = cfg.batch_size, int(member.data_seed), cfg.precision
        self.model = devices.prepare_model(member.model, dev)
        # data-parallel: DDP all-reduces the gradients inside backward, before mask_grads_ (sparsebasin.distributed)
        self.forward = compiling.training_forward(distributed.wrap(self.model, dev))
        self.conv = devices.is_conv_model(self.model)
        self.bound = BoundMask(self.model, member.mask) if member.mask else None
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                         weight_decay=cfg.weight_decay, nesterov=cfg.nesterov)
        self.check_every = 1 if dev.type == "cpu" else HOST_CHECK_EVERY

    def load_scratch(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])

    def scratch_model(self) -> dict:
        return self.model.state_dict()

    def start(self) -> None:
        if self.bound is not None:
            self.bound.apply_()
            self.bound.mask_optimizer_state_(self.optimizer)

    def train(self) -> None:
        self.model.train()

    def batches(self, epoch: int):
        from ..data import batches

        if not distributed.active():
            return batches(self.train_ds, self.batch_size, shuffle=True, data_seed=self.data_seed, epoch=epoch,
                           augment=self.augment, device=self.dev, drop_last=self.drop_last)
        return self._shards(epoch)

    def _shards(self, epoch: int):
        """This rank's part of each global batch, and the global batch's size (for the loss weight)."""
        from ..data import batches, num_examples
        from ..data.base import batch_bounds

        bounds = batch_bounds(num_examples(self.train_ds), self.batch_size, self.drop_last)
        its = batches(self.train_ds, self.batch_size, shuffle=True, data_seed=self.data_seed, epoch=epoch,
                      augment=self.augment, device=self.dev, drop_last=self.drop_last,
                      shard=(distributed.rank(), distributed.world()))
        for (lo, hi), (x, y) in zip(bounds, its):
            self.global_batch = hi - lo
            yield x, y

    def step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
        x = devices.to_input(x, self.dev, self.conv)
        y = y.to(self.dev, non_blocking=True)
        with devices.autocast(self.dev, self.precision):
            logits = self.forward(x)
        if distributed.active():
            # the shard's sum x world / global batch: DDP's mean over ranks is the global batch's mean loss
            total = F.cross_entropy(logits.float(), y, reduction="sum")
            loss = total * (distributed.world() / self.global_batch)
            shown = total.detach() / max(int(y.numel()), 1)
        else:
            loss = F.cross_entropy(logits.float(), y)
            shown = loss.detach()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.bound is not None:
            self.bound.mask_grads_()
        self.optimizer.step()  # SGD keeps masked weights at zero: end_epoch checks it
        with torch.no_grad():
            correct = (logits.argmax(1) == y).sum()
        return shown.view(1), correct.view(1), int(y.numel())

    def end_epoch(self) -> None:
        if self.bound is not None:
            drifted = self.bound.check_(self.optimizer)
            if drifted:
                log(f"warning: {drifted} pruned weights were nonzero at the end of the epoch (non-finite "
                    "gradients?); zeroed")

    def evaluate(self, test_ds: Any, batch_size: int, return_logits: bool) -> list[dict]:
        return [evaluate(self.model, test_ds, self.dev, batch_size, return_logits=return_logits)]

    def state_dicts(self) -> Sequence[dict]:
        return [self.model.state_dict()]
