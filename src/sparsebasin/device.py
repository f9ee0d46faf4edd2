"""Device choice and the fast paths that go with it.

CUDA gets bf16 autocast, channels_last and cudnn.benchmark; CPU stays in
float32 (bit-reproducible) and uses channels_last for conv nets only.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from .errors import UserError


def resolve(device: str | torch.device = "auto") -> torch.device:
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device {device!r} requested but CUDA is not available; use --device cpu or auto")
    try:
        return torch.device(device)
    except RuntimeError as exc:
        raise UserError(f"unknown device {device!r}; use auto, cpu or cuda[:N]") from exc


def is_conv_model(model: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


def prepare_model(model: nn.Module, device: torch.device) -> nn.Module:
    """Move to device and pick the memory format."""
    model = model.to(device)
    if is_conv_model(model):
        model = model.to(memory_format=torch.channels_last)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    return model


def autocast(device: torch.device, enabled: bool = True):
    """bf16 autocast on CUDA; a no-op elsewhere."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def to_input(x: torch.Tensor, device: torch.device, conv: bool) -> torch.Tensor:
    x = x.to(device, non_blocking=True)
    if conv and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x
