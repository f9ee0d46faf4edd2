"""Evaluation of a model on a dataset: loss, top-1, top-5 and optionally logits."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import device as devices
from . import distributed


@torch.no_grad()
def evaluate(
    model: nn.Module,
    ds,
    device: torch.device | str = "cpu",
    batch_size: int = 1000,
    return_logits: bool = False,
    max_batches: int | None = None,
) -> dict:
    """Mean cross-entropy, top-1 and top-5 accuracy (fractions) over ``ds``.

    Data-parallel (under torchrun every rank calls it): each rank evaluates its
    shard of every batch with rank 0's weights and buffers, the sums are
    all-reduced and the logits gathered in one process's order, so every rank
    returns one process's numbers.

    Runs in eval mode (BatchNorm uses running statistics) and restores the
    model's previous mode afterwards. Always fp32, whatever precision the model
    was trained in: bf16 logits carry 8 significant bits, so argmax, top-5, the
    error barriers and the saved predictions would be decided by rounding.
    """
    from .data import batches
    from .data.base import batch_bounds

    device = devices.resolve(device)
    was_training = model.training
    model.eval()
    conv = devices.is_conv_model(model)
    distributed.broadcast_state(model)
    # Sums stay on the device (float64: the same additions as Python floats) and are read once at the end:
    # a per-batch .item() would make the host wait for the GPU three times per batch.
    sums = torch.zeros(3, dtype=torch.float64, device=device)  # loss, top-1, top-5
    total = 0
    logits_all = []
    labels_all = []
    sizes = []  # the global batches' sizes, for gathering the ranks' logits
    bounds = batch_bounds(len(ds), batch_size)
    for i, (x, y) in enumerate(batches(ds, batch_size, shuffle=False, augment=False, device=device,
                                       shard=distributed.batch_shard())):
        if max_batches is not None and i >= max_batches:
            break
        sizes.append(bounds[i][1] - bounds[i][0])
        x = devices.to_input(x, device, conv)
        out = model(x).float()
        k = min(5, out.shape[1])
        sums += torch.stack([F.cross_entropy(out, y, reduction="sum").double(),
                             (out.argmax(1) == y).sum().double(),
                             (out.topk(k, dim=1).indices == y.view(-1, 1)).any(1).sum().double()])
        total += y.numel()
        if return_logits:
            logits_all.append(out)
            labels_all.append(y)
    model.train(was_training)
    if distributed.active():
        sums, seen = distributed.all_sum_many(sums, torch.tensor([float(total)], device=device))
        total = int(seen)
    loss_sum, correct, correct5 = sums.tolist()
    res = {
        "loss": loss_sum / max(total, 1),
        "acc": int(correct) / max(total, 1),
        "top5": int(correct5) / max(total, 1),
        "n": total,
    }
    if return_logits:
        logits = torch.cat(logits_all) if logits_all else torch.empty(0, device=device)
        labels = torch.cat(labels_all) if labels_all else torch.empty(0, dtype=torch.long, device=device)
        if logits_all:
            logits, labels = distributed.gather_batches(logits, sizes), distributed.gather_batches(labels, sizes)
        res["logits"], res["labels"] = logits.cpu(), labels.cpu()
    return res
