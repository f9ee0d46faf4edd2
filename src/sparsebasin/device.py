"""Device choice and the fast paths that go with it.

CUDA gets channels_last and cudnn.benchmark, and bf16 autocast for the
training step when the run's precision is ``bf16`` (``fp32``: none, as the
paper's authors trained); evaluation, matching statistics, BN reset and
REPAIR always run in fp32. CPU stays in float32 (bit-reproducible) and uses
channels_last for conv nets only.
"""

from __future__ import annotations

import contextlib
import os
import re

import torch
from torch import nn

from .errors import UserError


_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def resolve(device: str | torch.device = "auto") -> torch.device:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N`` as a usable torch.device, or one line saying why not.

    Other strings torch would parse (``meta``, ``cpu:0``, ``mps``) are refused:
    the steps run on the CPU or on one CUDA GPU, nothing else.
    """
    if isinstance(device, torch.device):
        return device
    if not isinstance(device, str) or not _DEVICE.match(device):
        raise UserError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(f"device {device!r} requested but CUDA is not available; use --device cpu or auto")
        dev = torch.device(device)
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            visible = os.environ.get("CUDA_VISIBLE_DEVICES")
            raise UserError(f"device {device!r} requested but only {count} GPU(s) are visible"
                            + (f" (CUDA_VISIBLE_DEVICES={visible})" if visible is not None else "")
                            + "; use cuda or a lower index")
        return dev
    return torch.device(device)


_DETERMINISTIC = False


def set_deterministic() -> None:
    """Bit-identical GPU reruns and resumes, at some speed: cudnn.benchmark off (it picks algorithms per
    process), deterministic algorithms only, cuBLAS's fixed workspace. CPU runs are deterministic anyway."""
    global _DETERMINISTIC
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    _DETERMINISTIC = True


def deterministic() -> bool:
    return _DETERMINISTIC


def is_conv_model(model: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


def prepare_model(model: nn.Module, device: torch.device) -> nn.Module:
    """Move to device and pick the memory format."""
    model = model.to(device)
    if is_conv_model(model):
        model = model.to(memory_format=torch.channels_last)
    if device.type == "cuda" and not _DETERMINISTIC:
        torch.backends.cudnn.benchmark = True
    return model


PRECISIONS = ("bf16", "fp32")


def effective_precision(device: torch.device, precision: str = "bf16") -> str:
    """The precision the training step really runs in: bf16 only where ``autocast`` applies it (CUDA)."""
    return "bf16" if precision == "bf16" and device.type == "cuda" else "fp32"


def autocast(device: torch.device, precision: str = "bf16"):
    """The training step's autocast: bf16 on CUDA when ``precision`` is bf16; a no-op otherwise."""
    if precision not in PRECISIONS:
        raise UserError(f"unknown precision {precision!r}; use bf16 or fp32")
    if effective_precision(device, precision) == "bf16":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def to_input(x: torch.Tensor, device: torch.device, conv: bool) -> torch.Tensor:
    x = x.to(device, non_blocking=True)
    if conv and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x
