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
    the parameter's device, and the keep masks as the parameter's dtype, so the
    per-step work is one ``_foreach_mul_`` over the gradients.

    With the gradients masked, plain SGD (weight decay, momentum, dampening,
    Nesterov) keeps pruned weights and their momentum exactly zero: the step
    adds ``lr * (0 + wd * 0)`` to ``0``. So the weights need no re-mask after
    every step; ``check_()`` (once per epoch) counts and zeroes any that
    drifted, a safety net for other optimizers and non-finite gradients.
    """

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
        self._keeps: list[torch.Tensor] | None = None

    def _keep_tensors(self) -> list[torch.Tensor]:
        if self._keeps is None:
            self._keeps = [(~pruned).to(p.dtype) for p, pruned in self.pairs]
        return self._keeps

    @torch.no_grad()
    def apply_(self) -> None:
        """Zero the pruned weights."""
        for p, pruned in self.pairs:
            p.masked_fill_(pruned, 0.0)

    @torch.no_grad()
    def mask_grads_(self) -> None:
        """Zero the gradients of pruned weights (call between backward and step): one foreach multiply."""
        live = [(p.grad, keep) for (p, _), keep in zip(self.pairs, self._keep_tensors()) if p.grad is not None]
        if live:
            torch._foreach_mul_([g for g, _ in live], [k for _, k in live])

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

    @torch.no_grad()
    def check_(self, optimizer: torch.optim.Optimizer) -> int:
        """Pruned weights that are not exactly zero (0 with SGD and finite gradients); re-masks them all."""
        # one host sync for the whole model, not one per tensor
        drifted = int(sum(p.detach().masked_select(pruned).ne(0).sum() for p, pruned in self.pairs)) if self.pairs else 0
        self.after_step_(optimizer)
        return drifted


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


def input_reaches_output(model: nn.Module, mask: Mapping[str, torch.Tensor]) -> bool:
    """Whether any path of kept weights connects the network's input to its output.

    A copy of the model gets non-negative weights (the mask, or ones where a
    weight is not masked, divided by the fan-in so values stay bounded), zero
    biases and identity BatchNorm; on an all-ones input its output is then
    positive exactly when such a path exists (ReLU, pooling and residual
    additions keep positive values). A mask that prunes a whole layer the
    forward pass cannot go around (an MLP layer, a VGG conv, a ResNet stem or
    head) leaves the output a constant: nothing to train.
    """
    import copy

    probe = copy.deepcopy(model).to("cpu", torch.float64).eval()
    first = None
    with torch.no_grad():
        for name, module in probe.named_modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.reset_running_stats()
                if module.affine:
                    module.weight.fill_(1.0)
                    module.bias.zero_()
            elif isinstance(module, (nn.Conv2d, nn.Linear)):
                first = first or module
                keep = mask.get(f"{name}.weight")
                w = keep.to(torch.float64) if keep is not None else torch.ones_like(module.weight)
                module.weight.copy_(w / max(module.weight[0].numel(), 1))
                if module.bias is not None:
                    module.bias.zero_()
        if first is None:
            return True
        if isinstance(first, nn.Linear):
            x = torch.ones(1, first.in_features, dtype=torch.float64)
        else:
            x = torch.ones(1, first.in_channels, 32, 32, dtype=torch.float64)
        out = probe(x)
    return bool((out.abs() > 0).any())


def check_trainable(mask: Mapping[str, torch.Tensor], model: nn.Module, source: str) -> None:
    """Refuse a mask that keeps no weight, or none on every path from input to output (one line, counts)."""
    kept = sum(int(m.sum()) for m in mask.values())
    total = sum(m.numel() for m in mask.values())
    if kept == 0:
        raise UserError(f"{source} keeps 0 of {total} prunable weights (sparsity 100%): a run with it cannot "
                        "learn; use a lower target sparsity")
    empty = [k for k, m in mask.items() if not bool(m.any())]
    if empty and not input_reaches_output(model, mask):
        raise UserError(f"{source} prunes every weight of {', '.join(empty[:3])}{' ...' if len(empty) > 3 else ''} "
                        f"({kept} of {total} weights kept overall), which cuts the input off from the output: "
                        "a run with it cannot learn; use a lower target sparsity")
