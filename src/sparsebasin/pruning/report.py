"""Sparsity reports: requested vs realised, per tensor, over prunable and over all weights.

The paper reports both the sparsity over the prunable weights (what the
target means) and over every parameter (biases, BatchNorm and shortcut convs
included, which are never pruned), so a report carries both.
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import nn


def sparsity_report(model: nn.Module, mask: Mapping[str, torch.Tensor], requested: float | None = None) -> dict:
    """Per parameter tensor and in total: numel, kept, sparsity (pruned fraction).

    ``prunable`` totals run over the mask's tensors, ``all`` over every
    parameter of the model; unmasked parameters count as fully kept.
    ``zeros_outside_mask`` counts exact zeros among kept weights (informative:
    a kept weight can be zero by chance, a pruned one must be).
    """
    layers = {}
    tot_n = tot_kept = pr_n = pr_kept = 0
    for name, p in model.named_parameters():
        n = p.numel()
        m = mask.get(name)
        kept = int(m.sum()) if m is not None else n
        layers[name] = {"numel": n, "kept": kept, "sparsity": 1 - kept / n, "prunable": m is not None}
        tot_n += n
        tot_kept += kept
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
