"""Sparsity reports: requested vs realised, per tensor, over prunable and over all weights.

The paper reports both the sparsity over the prunable weights (what the
target means) and over all weights, so a report carries the prunable totals,
``weights`` (every conv and linear weight, shortcut convs included: 90% of the
prunable weights of ResNet20x1 is 82.9% of its weights) and ``all`` (every
parameter, biases and BatchNorm included).
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import nn


def is_weight(name: str, tensor: torch.Tensor) -> bool:
    """A conv or linear weight (what "all weights" counts): a ``.weight`` with two or more axes."""
    return name.endswith("weight") and tensor.dim() >= 2


def weights_sparsity(state_dict: Mapping[str, torch.Tensor], mask: Mapping[str, torch.Tensor]) -> float:
    """The pruned fraction of all conv and linear weights (unmasked ones count as kept)."""
    total = pruned = 0
    for name, t in state_dict.items():
        if is_weight(name, t):
            total += t.numel()
            if name in mask:
                pruned += int((~mask[name].bool()).sum())
    return pruned / total if total else 0.0


def sparsity_report(model: nn.Module, mask: Mapping[str, torch.Tensor], requested: float | None = None) -> dict:
    """Per parameter tensor and in total: numel, kept, sparsity (pruned fraction).

    ``prunable`` totals run over the mask's tensors, ``all`` over every
    parameter of the model; unmasked parameters count as fully kept.
    ``zeros_outside_mask`` counts exact zeros among kept weights (informative:
    a kept weight can be zero by chance, a pruned one must be).
    """
    layers = {}
    tot_n = tot_kept = pr_n = pr_kept = w_n = w_kept = 0
    for name, p in model.named_parameters():
        n = p.numel()
        m = mask.get(name)
        kept = int(m.sum()) if m is not None else n
        layers[name] = {"numel": n, "kept": kept, "sparsity": 1 - kept / n, "prunable": m is not None}
        tot_n += n
        tot_kept += kept
        if is_weight(name, p):
            w_n += n
            w_kept += kept
        if m is not None:
            pr_n += n
            pr_kept += kept
    prunable = {
        "numel": pr_n,
        "kept": pr_kept,
        "pruned": pr_n - pr_kept,
        "realised": 1 - pr_kept / pr_n if pr_n else 0.0,
        "requested": requested,
    }
    if requested is not None:
        from .magnitude import kept_count

        prunable["requested_kept"] = kept_count(requested, pr_n)
    return {
        "requested": requested,
        "realised": prunable["realised"],
        "prunable": prunable,
        "weights": {
            "numel": w_n,
            "kept": w_kept,
            "pruned": w_n - w_kept,
            "realised": 1 - w_kept / w_n if w_n else 0.0,
        },
        "all": {
            "numel": tot_n,
            "kept": tot_kept,
            "pruned": tot_n - tot_kept,
            "realised": 1 - tot_kept / tot_n if tot_n else 0.0,
            # the target restated over all parameters (unmasked ones never pruned)
            "requested": requested * pr_n / tot_n if requested is not None and tot_n else None,
        },
        "layers": layers,
        "keys": list(mask),
    }
