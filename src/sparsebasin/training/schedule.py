"""Per-step learning-rate schedules: linear warm-up, then cosine decay to 0 (or step decay).

The learning rate is set before every optimizer step from the global step
count alone, so a resumed run (which restores the count) follows exactly the
same schedule. ``cosine`` (the CIFAR protocol): per-step rather than
per-epoch decay, the same cosine without the staircase, ending at 0 after the
last step. ``step`` (the paper's ImageNet code): after the warm-up, the rate
is multiplied by ``step_gamma`` every ``step_every`` epochs.
"""

from __future__ import annotations

import math

import torch


class CosineSchedule:
    """``lr(s)`` for step s in [0, total_steps): ``base * (s+1) / W`` for s < W
    (warm-up, never a zero step), then ``base * (1 + cos(pi * (s-W) / (total-W))) / 2``."""

    def __init__(self, optimizer: torch.optim.Optimizer, base_lr: float, total_steps: int, warmup_steps: int = 0):
        self.optimizer = optimizer
        self.base_lr = float(base_lr)
        self.total_steps = max(int(total_steps), 1)
        self.warmup_steps = min(max(int(warmup_steps), 0), self.total_steps)
        self.step_count = 0

    def lr_at(self, step: int) -> float:
        w = self.warmup_steps
        if step < w:
            return self.base_lr * (step + 1) / w
        decay = max(self.total_steps - w, 1)
        progress = min((step - w) / decay, 1.0)
        return self.base_lr * 0.5 * (1.0 + math.cos(math.pi * progress))

    @property
    def lr(self) -> float:
        """The learning rate of the next step."""
        return self.lr_at(self.step_count)

    def apply(self) -> float:
        """Set the next step's learning rate on every parameter group; returns it."""
        lr = self.lr
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def step(self) -> None:
        self.step_count += 1

    def state_dict(self) -> dict:
        return {"step_count": self.step_count, "base_lr": self.base_lr, "total_steps": self.total_steps,
                "warmup_steps": self.warmup_steps}

    def load_state_dict(self, state: dict) -> None:
        self.step_count = int(state["step_count"])


class StepSchedule(CosineSchedule):
    """Linear warm-up as the cosine schedule, then ``base * gamma ** floor((s - W) / (every * steps_per_epoch))``."""

    def __init__(self, optimizer: torch.optim.Optimizer, base_lr: float, total_steps: int, warmup_steps: int,
                 every_steps: int, gamma: float):
        super().__init__(optimizer, base_lr, total_steps, warmup_steps)
        self.every_steps = max(int(every_steps), 1)
        self.gamma = float(gamma)

    def lr_at(self, step: int) -> float:
        w = self.warmup_steps
        if step < w:
            return self.base_lr * (step + 1) / w
        return self.base_lr * self.gamma ** ((step - w) // self.every_steps)

    def state_dict(self) -> dict:
        return super().state_dict() | {"every_steps": self.every_steps, "gamma": self.gamma}


def make_schedule(cfg, optimizer: torch.optim.Optimizer, steps_per_epoch: int) -> CosineSchedule:
    """The schedule ``cfg`` (a TrainConfig) asks for, over ``cfg.epochs`` epochs of ``steps_per_epoch`` steps."""
    total = cfg.epochs * steps_per_epoch
    warmup = round(cfg.warmup_epochs * steps_per_epoch)
    if cfg.schedule == "step":
        return StepSchedule(optimizer, cfg.lr, total, warmup, cfg.step_every * steps_per_epoch, cfg.step_gamma)
    return CosineSchedule(optimizer, cfg.lr, total, warmup_steps=warmup)
