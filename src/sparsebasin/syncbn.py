"""BatchNorm with statistics over the global batch of a data-parallel run (``--sync-bn``).

By default each rank normalises its own shard (the paper's DDP script and
torchvision's recipe: sparsebasin.distributed). With ``--sync-bn`` every
BatchNorm layer normalises with the mean and variance of the whole global
batch, so a data-parallel step is one process's step up to summation order.

Why not ``torch.nn.SyncBatchNorm``: it refuses CPU tensors, so its path
could never run under the test suite's gloo processes. This one is plain
autograd around one all-reduce per layer forward (each rank's count, sum
and sum of squares, in float64) and one in backward (the all-reduce's gradient is the
all-reduce of the gradients), the same traffic as torch's, on any device.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


class _AllSum(torch.autograd.Function):
    """Sum over the ranks; its gradient is the sum of the ranks' gradients (every rank's loss uses the sum)."""

    @staticmethod
    def forward(ctx, t: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        t = t.clone()
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad


class SyncBatchNorm(_BatchNorm):
    """BatchNorm over every rank's examples in training; eval (running statistics) and one process as usual."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(input)
        self._check_input_dim(input)
        dims = [0, *range(2, input.dim())]
        x = input.float()
        n_r = input.numel() / input.size(1)
        if n_r:
            var_r, mean_r = torch.var_mean(x, dims, correction=0)  # this rank's, accurate in float32
        else:  # an empty shard (a last batch smaller than the world) adds nothing
            var_r = mean_r = x.new_zeros(self.num_features)
        count = torch.full((1,), n_r, dtype=torch.float64, device=input.device)
        mean64 = mean_r.double()
        stats = _AllSum.apply(torch.cat([count, mean64 * n_r, (var_r.double() + mean64 * mean64) * n_r]))
        c = self.num_features
        n = stats[0]
        mean = stats[1:1 + c] / n
        var = (stats[1 + c:] / n - mean * mean).clamp_min(0)  # float64: no cancellation worth the name
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                unbiased = var * (n / (n - 1)) if float(n) > 1 else var
                self.running_mean.mul_(1 - factor).add_(mean.to(self.running_mean.dtype), alpha=factor)
                self.running_var.mul_(1 - factor).add_(unbiased.to(self.running_var.dtype), alpha=factor)
        shape = [1, c] + [1] * (input.dim() - 2)
        out = (x - mean.float().view(shape)) * torch.rsqrt(var + self.eps).float().view(shape)
        if self.affine:
            out = out * self.weight.float().view(shape) + self.bias.float().view(shape)
        return out.to(input.dtype)


def convert(module: nn.Module) -> nn.Module:
    """Swap every BatchNorm layer of ``module`` for a SyncBatchNorm holding the same parameters and buffers
    (the optimizer, masks and state-dict keys are unchanged)."""
    for name, child in module.named_children():
        if isinstance(child, _BatchNorm) and not isinstance(child, SyncBatchNorm):
            new = SyncBatchNorm(child.num_features, child.eps, child.momentum, child.affine, child.track_running_stats,
                                device="meta")
            for key, value in [*child._parameters.items(), *child._buffers.items()]:
                (new._parameters if key in child._parameters else new._buffers)[key] = value
            new.train(child.training)
            setattr(module, name, new)
        else:
            convert(child)
    return module
