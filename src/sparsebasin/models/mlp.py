"""Fully connected ReLU network for MNIST-1D and other flat inputs."""

from __future__ import annotations

import torch
from torch import nn

from ._spec import PermutationSpec, SpecBuilder

ARCH = {
    "name": "mlp",
    "label": "MLP",
    "input": "flat",
    "widths": None,
    "model_args": {"depth": 2, "hidden": 128},
    "never_prune": [],
    "fused": True,
    "fused_engine_cpu": "mlp",
    "cost": {"epoch_minutes": 0.01, "cpu_slowdown": 1.0, "width_exponent": 1.0,
             "width_ref": 1.0, "mem_mb_per_width2": 0, "gflops_per_image": 0.0001,
             "act_mb_per_image": 0.001, "params_m": 0.023},
}


class MLP(nn.Module):
    """``depth`` hidden layers of ``hidden * width`` units, then a linear head.

    Keys: ``hidden.{i}.weight|bias`` and ``head.weight|bias``.
    """

    def __init__(self, input_size: int, num_classes: int, width: int = 1, depth: int = 2, hidden: int = 128, **_: object):
        super().__init__()
        units = hidden * width
        sizes = [input_size] + [units] * depth
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.head = nn.Linear(sizes[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        for layer in self.hidden:
            x = torch.relu(layer(x))
        return self.head(x)


def build(cfg: dict, num_classes: int, in_channels: int, input_size: int | None) -> nn.Module:
    from ..errors import UserError

    if input_size is None:
        raise UserError("the MLP needs the dataset's input size")
    return MLP(input_size=input_size, num_classes=num_classes, **{k: v for k, v in cfg.items() if k != "name"})


def permutation_spec(model: MLP, stream_points: str = "stage_output") -> PermutationSpec:
    """``hidden.{i}`` per hidden layer, matched after its ReLU."""
    b = SpecBuilder("mlp", model)
    prev = None
    for i in range(len(model.hidden)):
        g = b.group(f"hidden.{i}", f"hidden.{i}", relu=True)
        b.linear(f"hidden.{i}", g, prev)
        prev = g
    b.linear("head", None, prev)
    return b.build()
