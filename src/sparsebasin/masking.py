"""Keep pruned weights exactly zero during training.

A mask is a plain dict ``{state-dict key: bool tensor}`` (True = kept). The
trainer zeroes the masked weights once at the start, then after every
backward pass zeroes their gradients, keeps the optimizer's momentum buffers
zero there, and zeroes the weights again after every optimizer step. With
exact zeros in weight, gradient and momentum, neither momentum nor weight
decay can move a pruned weight; the re-masking after the step makes that
hold for any optimizer, not only for SGD's arithmetic.

``masked_fill_`` (not multiplication) is used throughout so a pruned entry
becomes +0.0 even if it held NaN, inf or -0.0.
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from .errors import UserError


class BoundMask:
    """A mask resolved against one model: (parameter, pruned-positions) pairs on
    the parameter's device, so the per-step work is a few ``masked_fill_`` calls."""

    def __init__(self, model: nn.Module, mask: Mapping[str, torch.Tensor]):
        params = dict(model.named_parameters())
        self.pairs: list[tuple[nn.Parameter, torch.Tensor]] = []
        for key, keep in mask.items():
            if key not in params:
                raise UserError(f"mask key {key!r} is not a parameter of the model; the mask belongs to another architecture")
            p = params[key]
            if tuple(keep.shape) != tuple(p.shape):
                raise UserError(f"mask entry {key!r} has shape {tuple(keep.shape)}, expected {tuple(p.shape)} (another width?)")
            if keep.dtype != torch.bool:
                raise UserError(f"mask entry {key!r} is {keep.dtype}, not bool; masks must be boolean")
            pruned = (~keep).to(p.device)
            if p.dim() == 4 and p.is_contiguous(memory_format=torch.channels_last):
                pruned = pruned.contiguous(memory_format=torch.channels_last)
            self.pairs.append((p, pruned))

    @torch.no_grad()
    def apply_(self) -> None:
        """Zero the pruned weights."""
        for p, pruned in self.pairs:
            p.masked_fill_(pruned, 0.0)

    @torch.no_grad()
    def mask_grads_(self) -> None:
        """Zero the gradients of pruned weights (call between backward and step)."""
        for p, pruned in self.pairs:
            if p.grad is not None:
                p.grad.masked_fill_(pruned, 0.0)

    @torch.no_grad()
    def mask_optimizer_state_(self, optimizer: torch.optim.Optimizer) -> None:
        """Zero every per-parameter optimizer buffer (SGD's ``momentum_buffer``,
        Adam's moments) at the pruned positions."""
        for p, pruned in self.pairs:
            state = optimizer.state.get(p)
            if not state:
                continue
            for value in state.values():
                if isinstance(value, torch.Tensor) and value.shape == p.shape:
                    value.masked_fill_(pruned, 0.0)

    def after_step_(self, optimizer: torch.optim.Optimizer) -> None:
        """Re-apply the mask to weights and buffers after ``optimizer.step()``."""
        self.apply_()
        self.mask_optimizer_state_(optimizer)


def apply_mask_(model: nn.Module, mask: Mapping[str, torch.Tensor]) -> nn.Module:
    """Zero the weights of ``model`` where ``mask`` is False (in place); returns the model."""
    BoundMask(model, mask).apply_()
    return model


def mask_grads_(model: nn.Module, mask: Mapping[str, torch.Tensor]) -> None:
    """Zero the gradients of ``model`` where ``mask`` is False (in place)."""
    BoundMask(model, mask).mask_grads_()


def mask_optimizer_state_(optimizer: torch.optim.Optimizer, model: nn.Module, mask: Mapping[str, torch.Tensor]) -> None:
    """Zero the optimizer's per-parameter buffers where ``mask`` is False (in place)."""
    BoundMask(model, mask).mask_optimizer_state_(optimizer)


def mask_from_model(model: nn.Module, keys: list[str]) -> dict[str, torch.Tensor]:
    """The mask implied by the nonzero entries of ``keys`` in ``model`` (True = nonzero)."""
    params = dict(model.named_parameters())
    return {k: params[k].detach().ne(0).cpu() for k in keys}


def masked_nonzeros(model: nn.Module, mask: Mapping[str, torch.Tensor]) -> int:
    """How many pruned positions hold a nonzero weight (0 when the mask holds)."""
    params = dict(model.named_parameters())
    return sum(int(params[k].detach().cpu()[~m.cpu()].ne(0).sum()) for k, m in mask.items())
