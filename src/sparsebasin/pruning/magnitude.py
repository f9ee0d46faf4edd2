"""Global magnitude pruning with exact weight counts.

Pruning is count-based: a round keeps exactly ``kept_count(s, N)`` of the N
prunable weights, chosen among the weights still alive by absolute value
over all prunable tensors at once. Ties at the threshold go to the earlier
position (tensor order of the mask, then flat index), so the same weights
always give the same mask on any machine.
"""

from __future__ import annotations

import fnmatch
from typing import Iterable, Mapping

import torch
from torch import nn

from ..errors import UserError
from ..models import prunable_keys


def select_keys(model: nn.Module, include: Iterable[str] = (), exclude: Iterable[str] = ()) -> list[str]:
    """The parameters to prune, in model order.

    Default: ``models.prunable_keys`` (every Linear and convolution weight and the card's ``also_prune``,
    less its ``never_prune``: no shortcut convs; a weight neither covers is refused there).
    ``include`` glob patterns replace the default with the matching parameters;
    ``exclude`` patterns remove parameters. A pattern matching nothing is an
    error (a typo would otherwise silently prune the wrong layers).
    """
    include, exclude = list(include or ()), list(exclude or ())
    names = [n for n, _ in model.named_parameters()]
    for flag, pats in (("--prune-include", include), ("--prune-exclude", exclude)):
        for pat in pats:
            if not any(fnmatch.fnmatchcase(n, pat) for n in names):
                raise UserError(
                    f"{flag} {pat!r} matches no parameter of the model; parameters look like {names[:4]}"
                )
    if include:
        keys = [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in include)]
    else:
        keys = prunable_keys(model)
    keys = [k for k in keys if not any(fnmatch.fnmatchcase(k, p) for p in exclude)]
    if not keys:
        raise UserError("no prunable parameters left after --prune-include/--prune-exclude; loosen the patterns")
    return keys


def kept_count(sparsity: float, total: int) -> int:
    """Weights kept at ``sparsity``: round((1 - s) * N)."""
    return int(round((1.0 - float(sparsity)) * int(total)))


def mask_counts(mask: Mapping[str, torch.Tensor]) -> tuple[int, int]:
    """(kept, total) over the mask's entries."""
    total = sum(m.numel() for m in mask.values())
    kept = sum(int(m.sum()) for m in mask.values())
    return kept, total


@torch.no_grad()
def global_magnitude_mask(
    weights: Mapping[str, torch.Tensor], mask: Mapping[str, torch.Tensor], n_keep: int
) -> dict[str, torch.Tensor]:
    """Keep the ``n_keep`` largest-magnitude weights among those ``mask`` keeps.

    ``weights`` maps every key of ``mask`` to a tensor of its shape. Returns a
    new mask, a subset of ``mask``, with exactly ``n_keep`` True entries.
    """
    keys = list(mask)
    for k in keys:
        if k not in weights:
            raise UserError(f"no weight for mask key {k!r}; the mask belongs to another architecture")
        if tuple(weights[k].shape) != tuple(mask[k].shape):
            raise UserError(f"weight {k!r} has shape {tuple(weights[k].shape)}, mask has {tuple(mask[k].shape)}")
    alive = torch.cat([mask[k].detach().cpu().reshape(-1) for k in keys])
    n_alive = int(alive.sum())
    if not 0 <= n_keep <= n_alive:
        raise ValueError(f"cannot keep {n_keep} weights: {n_alive} are alive")
    # Pruned weights score -1, below every alive magnitude (>= 0), so they stay pruned.
    scores = torch.cat([weights[k].detach().cpu().float().abs().reshape(-1) for k in keys])
    scores = torch.where(alive, scores, torch.full_like(scores, -1.0))
    if torch.isnan(scores).any():
        raise UserError("a prunable weight is NaN; the checkpoint is broken (the run diverged?), retrain it")
    keep = torch.zeros_like(alive)
    if n_keep > 0:
        thr = torch.kthvalue(scores, scores.numel() - n_keep + 1).values
        above = scores > thr
        n_tie = n_keep - int(above.sum())
        tie_idx = torch.nonzero(scores == thr).reshape(-1)[:n_tie]
        keep = above
        keep[tie_idx] = True
    out, start = {}, 0
    for k in keys:
        n = mask[k].numel()
        out[k] = keep[start:start + n].reshape(mask[k].shape).clone()
        start += n
    return out


def prune_to(
    weights: Mapping[str, torch.Tensor], mask: Mapping[str, torch.Tensor], sparsity: float
) -> dict[str, torch.Tensor]:
    """Prune the alive weights of ``mask`` down to exactly ``sparsity`` of the total."""
    kept, total = mask_counts(mask)
    n_keep = kept_count(sparsity, total)
    if n_keep > kept:
        raise UserError(
            f"cannot prune to sparsity {sparsity}: the starting mask is already sparser ({1 - kept / total:.6f})"
        )
    return global_magnitude_mask(weights, mask, n_keep)
