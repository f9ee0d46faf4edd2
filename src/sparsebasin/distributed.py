"""Data-parallel training on torch.distributed, launched by ``torchrun`` (or ``srun`` through env://).

Every rank draws the same epoch order, crops and flips from (data seed,
epoch) and takes a contiguous shard of each global batch (``--batch-size``
is the global batch, split across ranks), so the data a step sees are one
process's. Each rank's loss is its shard's summed cross-entropy x world /
global batch: DDP's mean of the ranks' gradients is then the gradient of the
global batch mean, and the gradients are all-reduced before the mask is
applied to them. BatchNorm keeps per-rank statistics (the paper's DDP script
and torchvision's recipe); DDP broadcasts rank 0's buffers, so rank 0's
running statistics are the model's. ``--sync-bn`` normalises over the global
batch instead (sparsebasin.syncbn). Evaluation, matching statistics, BN reset
and REPAIR are data-parallel as well: each rank takes its shard of every
batch (rank 0's weights and buffers) and the sums are all-reduced. Only rank
0 takes the run directory's lock and writes; every rank resumes from the
same ``.resume.pt``.

Backend: NCCL for CUDA; gloo on CPU (and when NCCL is missing), with a log
line. A rank that dies makes torchrun stop the others; a collective that
waits longer than ``SPARSEBASIN_DIST_TIMEOUT`` seconds (default 600) fails.
"""

from __future__ import annotations

import datetime
import os
from typing import TYPE_CHECKING

from .errors import UserError
from .progress import log

if TYPE_CHECKING:
    import torch

_STATE = {"on": False, "rank": 0, "world": 1, "local": 0, "sync_bn": False}


STEPS = ("train", "prune", "sparse", "match", "interpolate", "plane")  # data-parallel under torchrun


def refuse_launch(step: str) -> None:
    """One line, before any work, for a step that runs in one process when torchrun started it."""
    if launched() and step not in STEPS:
        raise UserError(f"{step} runs in one process: launch it without torchrun "
                        f"({', '.join(STEPS[:-1])} and {STEPS[-1]} are the data-parallel steps)")


def launched() -> bool:
    """Started by torchrun (or srun with the env:// variables) with more than one process (torch-free: the steps'
    argument checks ask it before anything is imported)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def setup(device: str, sync_bn: bool = False) -> str:
    """Join the process group; returns this rank's device ("cuda:<local rank>" for cuda). ``sync_bn``:
    BatchNorm over the global batch in the models :func:`wrap` wraps."""
    if _STATE["on"] or not launched():
        return device
    import torch
    import torch.distributed as dist

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", rank))
    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if cuda and not torch.cuda.is_available():
        raise UserError(f"--device {device}: no CUDA device visible to rank {rank}")
    backend = "nccl" if cuda and dist.is_nccl_available() else "gloo"
    if cuda:
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    elif device == "auto":
        device = "cpu"
    timeout = datetime.timedelta(seconds=float(os.environ.get("SPARSEBASIN_DIST_TIMEOUT", "600")))
    dist.init_process_group(backend=backend, timeout=timeout)
    _STATE.update(on=True, rank=rank, world=world, local=local, sync_bn=bool(sync_bn))
    if rank == 0:
        why = "" if backend == "nccl" else (" (NCCL unavailable)" if cuda else " (CPU: NCCL unavailable)")
        log(f"distributed: {world} processes, backend {backend}{why}")
    return device


def active() -> bool:
    return _STATE["on"]


def sync_bn() -> bool:
    """Whether BatchNorm normalises over the global batch (``--sync-bn`` under torchrun)."""
    return _STATE["on"] and _STATE["sync_bn"]


def rank() -> int:
    return _STATE["rank"]


def world() -> int:
    return _STATE["world"]


def writer() -> bool:
    """Whether this process writes files (rank 0, or the only process)."""
    return _STATE["rank"] == 0


def shard(n: int) -> slice:
    """This rank's contiguous part of a global batch of ``n`` examples."""
    r, w = _STATE["rank"], _STATE["world"]
    return slice(r * n // w, (r + 1) * n // w)


def batch_shard() -> tuple[int, int] | None:
    """``shard=`` for ``data.batches``: (rank, world) when data-parallel, else None (the whole batch)."""
    return (_STATE["rank"], _STATE["world"]) if _STATE["on"] else None


def broadcast_state(model: torch.nn.Module) -> None:
    """Rank 0's parameters and buffers on every rank, in place: with per-rank BatchNorm each rank's running
    statistics are its own, and rank 0's are the model's (the saved one)."""
    if not _STATE["on"]:
        return
    import torch
    import torch.distributed as dist

    with torch.no_grad():
        for t in [*model.parameters(), *model.buffers()]:
            dist.broadcast(t.data, src=0)


def gather_batches(local: torch.Tensor, batch_sizes: list[int]) -> torch.Tensor:
    """Every rank's shards of a sequence of global batches (``local``: this rank's, concatenated), in the
    one-process order, on every rank."""
    if not _STATE["on"]:
        return local
    import torch
    import torch.distributed as dist

    w = _STATE["world"]
    sizes = [[(r + 1) * n // w - r * n // w for n in batch_sizes] for r in range(w)]
    counts = [sum(s) for s in sizes]
    if local.shape[0] != counts[_STATE["rank"]]:
        raise RuntimeError(f"rank {_STATE['rank']}: {local.shape[0]} rows for shards of {counts[_STATE['rank']]}")
    padded = torch.cat([local, local.new_zeros((max(counts) - local.shape[0], *local.shape[1:]))]).contiguous()
    parts = [torch.empty_like(padded) for _ in range(w)]
    dist.all_gather(parts, padded)
    pieces = [torch.split(parts[r][:counts[r]], sizes[r]) for r in range(w)]
    return torch.cat([pieces[r][b] for b in range(len(batch_sizes)) for r in range(w)])


def all_sum(t: torch.Tensor) -> torch.Tensor:
    if _STATE["on"]:
        import torch.distributed as dist

        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_sum_many(*tensors: torch.Tensor) -> list[torch.Tensor]:
    """The ranks' sums of several tensors (one device) in one all-reduce: float64, in their shapes."""
    import torch

    flat = all_sum(torch.cat([t.reshape(-1).to(torch.float64) for t in tensors]))
    return [part.view(t.shape) for part, t in zip(torch.split(flat, [t.numel() for t in tensors]), tensors)]


def broadcast_ints(values: list[int]) -> list[int]:
    """Rank 0's integers on every rank (decisions only rank 0 may take: what to train, where to resume)."""
    if not _STATE["on"]:
        return values
    import torch
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.int64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.broadcast(t, src=0)
    return [int(v) for v in t.tolist()]


def barrier() -> None:
    if _STATE["on"]:
        import torch.distributed as dist

        dist.barrier()


def check_batch(batch_size: int) -> None:
    if _STATE["on"] and batch_size % _STATE["world"]:
        raise UserError(f"batch size {batch_size} is the global batch and must be divisible by the {_STATE['world']} "
                        f"processes; use a multiple of {_STATE['world']}")


def wrap(model: torch.nn.Module, dev: torch.device) -> torch.nn.Module:
    """The module the training step runs: DDP around ``model`` when distributed, else ``model``."""
    if not _STATE["on"]:
        return model
    from torch.nn.parallel import DistributedDataParallel

    if _STATE["sync_bn"]:
        from .syncbn import convert

        convert(model)  # in place: same parameters and buffers, so the optimizer and masks still hold them
    return DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)


def shutdown() -> None:
    """Leave together: a rank that tears its group down while rank 0 still writes aborts in gloo's threads."""
    if _STATE["on"]:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()
        _STATE.update(on=False, rank=0, world=1, local=0, sync_bn=False)
