"""Training hyper-parameters: the ``TrainConfig`` record and the paper's presets.

A run is fully described by a preset name plus explicit overrides; ``None``
for an override means "take the preset's value", so CLI defaults never
silently replace the paper's settings.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..errors import UserError
from ..options import option

AUGMENT_CHOICES = ("auto", "on", "off")
PRECISIONS = ("bf16", "fp32")  # the training step's arithmetic on CUDA (device.autocast); CPU is always fp32
SCHEDULES = ("cosine", "step")
FUSED_ENGINES = ("auto", "grouped", "mlp")  # training.fused: auto picks the card's engine for the device


@dataclass(frozen=True)
class TrainConfig:
    """SGD (momentum, weight decay) on a per-step cosine schedule to 0 with optional linear warm-up.

    ``augment``: "auto" uses the dataset's default (crop + flip for images,
    none for MNIST-1D), "on"/"off" force it. ``eval_batch_size`` only changes
    speed and memory of the per-epoch test evaluation. ``precision``: bf16
    autocast for the training step on CUDA, or fp32 (evaluation is fp32 either
    way). ``schedule``: cosine to 0, or step decay by ``step_gamma`` every
    ``step_every`` epochs after the warm-up (``training.schedule``).

    Each field is declared once, with its help (``options.option``): the step CLIs
    (``steps.common.add_optim_args``), the plan's command lines (``Plan.optim_args``), the overrides a preset
    takes (``resolve_config``) and the run keys (``key_dict``) all read these declarations; a new option is a
    field here plus its schema entries.
    """

    epochs: int = option("training epochs", "positive_int")
    lr: float = option("learning rate", "positive_float")
    momentum: float = option("SGD momentum", "momentum", 0.9)
    weight_decay: float = option("weight decay", "nonneg_float", 5e-4)
    batch_size: int = option("global batch size", "positive_int", 128)
    warmup_epochs: float = option("linear warm-up epochs", "nonneg_float", 0.0)
    augment: str = option("random crop + flip (auto: on for image datasets)", choices=AUGMENT_CHOICES,
                          default="auto", shared=True)
    nesterov: bool = option("Nesterov momentum", "boolean", False)
    eval_batch_size: int = option("batch size of the per-epoch test evaluation (speed only)", default=1000, cli=False,
                                  result=False)
    preset: str | None = option("the named preset this config came from", default=None, cli=False)
    precision: str = option("the training step on CUDA: bf16 autocast or fp32 (evaluation is fp32 either way)",
                            choices=PRECISIONS, default="bf16", shared=True)
    schedule: str = option("cosine to 0, or step decay (step_gamma every step_every epochs after warm-up)",
                           choices=SCHEDULES, default="cosine")
    step_every: int = option("step schedule: epochs per decay", "positive_int", 30)
    step_gamma: float = option("step schedule: factor per decay", "step_gamma", 0.1)

    def validate(self) -> "TrainConfig":
        """Return self, or raise UserError naming the bad field."""
        def bad(field: str, why: str) -> UserError:
            return UserError(f"training config: {field} {why} (got {getattr(self, field)!r})")

        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 1:
            raise bad("epochs", "must be a positive integer")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0):
            raise bad("lr", "must be a positive number")
        if not (0 <= self.momentum < 1):
            raise bad("momentum", "must be in [0, 1)")
        if self.weight_decay < 0:
            raise bad("weight_decay", "must be >= 0")
        for field in ("batch_size", "eval_batch_size"):
            v = getattr(self, field)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise bad(field, "must be a positive integer")
        if not (0 <= self.warmup_epochs <= self.epochs):
            raise bad("warmup_epochs", f"must be between 0 and epochs ({self.epochs})")
        if self.augment not in AUGMENT_CHOICES:
            raise bad("augment", f"must be one of {', '.join(AUGMENT_CHOICES)}")
        if self.nesterov and self.momentum == 0:
            raise bad("nesterov", "needs momentum > 0")
        if self.precision not in PRECISIONS:
            raise bad("precision", f"must be one of {', '.join(PRECISIONS)}")
        if self.schedule not in SCHEDULES:
            raise bad("schedule", f"must be one of {', '.join(SCHEDULES)}")
        if isinstance(self.step_every, bool) or not isinstance(self.step_every, int) or self.step_every < 1:
            raise bad("step_every", "must be a positive integer (epochs)")
        if not (isinstance(self.step_gamma, (int, float)) and 0 < self.step_gamma <= 1):
            raise bad("step_gamma", "must be in (0, 1]")
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def key_dict(self) -> dict:
        """``to_dict`` without the options declared ``key="if_set"`` that are at their default: what keys and
        fingerprints hash, stable when an option is added."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.metadata.get("key", "always") == "always" or getattr(self, f.name) != f.default}

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """Rebuild from ``to_dict()`` output (e.g. a result's provenance); unknown keys are an error."""
        names = {f.name for f in dataclasses.fields(cls)}
        extra = sorted(set(d) - names)
        if extra:
            raise UserError(f"training config has unknown keys {extra}; expected some of {sorted(names)}")
        return cls(**d).validate()


# The paper's settings (PROTOCOL.md). CIFAR: batch 128, T = 200, cosine to 0,
# no warm-up; the workflow passes epochs = T - k for sparse runs. IMP-FT
# follows the published CIFAR code: plain SGD (no momentum, no weight decay).
# ImageNet: batch 1024, lr 0.4, wd 1e-4, 5 warm-up epochs; its published IMP
# code kept momentum 0.9 / wd 1e-4, so imagenet_imp_ft does too (no warm-up:
# it fine-tunes a trained model).
# MNIST-1D (20k/5k examples), measured on the default MLP (2 x 128 hidden),
# CPU, seed 0 unless noted. Dense: lr .3 beat .02/.05/.1/.2/.5/.8; test acc
# 91.3% (seed 0), 92.0% (seeds 1, 2) after 30 epochs, 92.5% after 40. Sparse (90% one-shot
# magnitude mask, rewind to epoch 4, 36 epochs): lr .2 87.2%, .3 87.1%, .1
# 86.1%, .05 84.8%. IMP-FT (plain SGD, 20% per round to 90%): lr .1 x 10
# epochs 88.3% at 90%, as good as .05 x 20; .02 x 10 84.2%.
PRESETS: dict[str, TrainConfig] = {
    "dense": TrainConfig(epochs=200, lr=0.08, momentum=0.9, weight_decay=5e-4, batch_size=128),
    "sparse": TrainConfig(epochs=200, lr=0.02, momentum=0.9, weight_decay=5e-4, batch_size=128),
    "imp_ft": TrainConfig(epochs=50, lr=0.01, momentum=0.0, weight_decay=0.0, batch_size=128),
    "imagenet_dense": TrainConfig(epochs=80, lr=0.4, momentum=0.9, weight_decay=1e-4, batch_size=1024,
                                  warmup_epochs=5, eval_batch_size=500),
    "imagenet_sparse": TrainConfig(epochs=80, lr=0.4, momentum=0.9, weight_decay=1e-4, batch_size=1024,
                                   warmup_epochs=5, eval_batch_size=500),
    "imagenet_imp_ft": TrainConfig(epochs=20, lr=0.04, momentum=0.9, weight_decay=1e-4, batch_size=1024,
                                   eval_batch_size=500),
    "mnist1d_dense": TrainConfig(epochs=30, lr=0.3, momentum=0.9, weight_decay=5e-4, batch_size=128),
    "mnist1d_sparse": TrainConfig(epochs=30, lr=0.2, momentum=0.9, weight_decay=5e-4, batch_size=128),
    "mnist1d_imp_ft": TrainConfig(epochs=10, lr=0.1, momentum=0.0, weight_decay=0.0, batch_size=128),
}
PRESETS = {name: dataclasses.replace(cfg, preset=name) for name, cfg in PRESETS.items()}


def resolve_config(preset: str | TrainConfig = "dense", **overrides) -> TrainConfig:
    """The preset (a name in ``PRESETS`` or a TrainConfig) with every non-None override applied, validated."""
    if isinstance(preset, TrainConfig):
        base = preset
    else:
        if preset not in PRESETS:
            raise UserError(f"unknown --preset {preset!r}; choose one of: {', '.join(PRESETS)}")
        base = PRESETS[preset]
    names = {f.name for f in dataclasses.fields(TrainConfig)} - {"preset"}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise UserError(f"training config: unknown setting {unknown[0]!r}; known: {', '.join(sorted(names))}")
    return dataclasses.replace(base, **{k: v for k, v in overrides.items() if v is not None}).validate()
