"""In-memory datasets and a batch iterator that augments on the training device.

Datasets that fit in device memory (MNIST-1D, CIFAR, SVHN) live as one
tensor of inputs and one of labels. Each epoch draws its order from a
generator seeded by (data_seed, epoch), so the data order is independent of
the weight-init seed and an interrupted run resumes on exactly the same
batches. Random crop with padding and horizontal flip run on whole batches, on the
raw pixels (zero padding is black, as with torchvision), before normalising.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Iterator

import torch


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    num_classes: int
    in_channels: int
    input_shape: tuple[int, ...]  # one example, without the batch axis
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: bool  # random crop (+ flip) by default for training
    flip: bool = True  # horizontal flip is part of the augmentation (not for digits)

    @property
    def input_size(self) -> int:
        n = 1
        for d in self.input_shape:
            n *= d
        return n


@dataclass
class ArrayDataset:
    """Inputs ``x`` (uint8 images NCHW or float arrays) and int64 labels ``y``."""

    info: DatasetInfo
    x: torch.Tensor
    y: torch.Tensor
    split: str = "train"
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def to(self, device: torch.device) -> "ArrayDataset":
        return ArrayDataset(self.info, self.x.to(device), self.y.to(device), self.split, self.meta)

    def subset(self, n: int) -> "ArrayDataset":
        return ArrayDataset(self.info, self.x[:n], self.y[:n], self.split, self.meta)

    def take(self, index: torch.Tensor) -> "ArrayDataset":
        """The examples at ``index`` (int64), in that order."""
        i = index.to(self.x.device)
        return ArrayDataset(self.info, self.x.index_select(0, i), self.y.index_select(0, i.to(self.y.device)),
                            self.split, self.meta)

    def labels(self) -> torch.Tensor:
        return self.y


def normalise(x: torch.Tensor, info: DatasetInfo) -> torch.Tensor:
    """uint8 images -> float in [0,1] -> per-channel standardised; floats: standardised."""
    if x.dtype == torch.uint8:
        x = x.float().div_(255.0)
    else:
        x = x.float()
    mean, std = _mean_std(info.mean, info.std, x.device, x.dtype, x.dim() == 4)
    return (x - mean) / std


@functools.lru_cache(maxsize=64)
def _mean_std(mean: tuple, std: tuple, device: torch.device, dtype: torch.dtype, images: bool):
    """Built once per (dataset, device): a tensor made from Python numbers is a blocking upload on CUDA."""
    shape = (1, -1, 1, 1) if images else (-1,)
    return (torch.tensor(mean, device=device, dtype=dtype).view(shape),
            torch.tensor(std, device=device, dtype=dtype).view(shape))


def crop_flip(x: torch.Tensor, pad: int, dy: torch.Tensor | None, dx: torch.Tensor | None,
              flips: torch.Tensor | None) -> torch.Tensor:
    """Crop a zero-padded NCHW batch at offsets (dy, dx) and flip where ``flips``: all on x's device, no host work."""
    n, c, h, w = x.shape
    dev = x.device
    if pad > 0:
        xp = torch.nn.functional.pad(x, (pad, pad, pad, pad))
        rows = dy.view(n, 1) + torch.arange(h, device=dev).view(1, h)  # n,h
        cols = dx.view(n, 1) + torch.arange(w, device=dev).view(1, w)  # n,w
        xp = torch.gather(xp, 2, rows.view(n, 1, h, 1).expand(n, c, h, w + 2 * pad))
        x = torch.gather(xp, 3, cols.view(n, 1, 1, w).expand(n, c, h, w))
    if flips is not None:
        x = torch.where(flips.view(n, 1, 1, 1), x.flip(3), x)
    return x


def _draw_crop_flip(n: int, pad: int, generator: torch.Generator, flip: bool) -> list[torch.Tensor]:
    """One batch's offsets and flips, in the generator order every version of this iterator has used."""
    out = []
    if pad > 0:
        out += [torch.randint(0, 2 * pad + 1, (n,), generator=generator),
                torch.randint(0, 2 * pad + 1, (n,), generator=generator)]
    if flip:
        out.append((torch.rand(n, generator=generator) < 0.5).long())
    return out


def random_crop_flip(x: torch.Tensor, pad: int, generator: torch.Generator, flip: bool = True) -> torch.Tensor:
    """Random crop (zero padding ``pad``) and horizontal flip for a whole NCHW batch.

    Offsets are drawn on the CPU generator (reproducible across devices) and
    applied with one gather, no per-image Python.
    """
    draws = [d.to(x.device) for d in _draw_crop_flip(x.shape[0], pad, generator, flip)]
    dy, dx = (draws[0], draws[1]) if pad > 0 else (None, None)
    return crop_flip(x, pad, dy, dx, draws[-1].bool() if flip else None)


def epoch_generator(data_seed: int, epoch: int) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed((int(data_seed) * 1_000_003 + int(epoch)) % (2**63 - 1))
    return g


def upload(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Host -> device without waiting: pinned memory and an async copy on CUDA (the source is never reused)."""
    if device.type == "cuda" and t.device.type == "cpu":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


CROP_PAD = 4  # CIFAR/SVHN random crop: 4 pixels of black padding, as in the paper's recipe


def iterate_batches(
    ds: ArrayDataset,
    batch_size: int,
    *,
    shuffle: bool,
    data_seed: int = 0,
    epoch: int = 0,
    augment: bool = False,
    device: torch.device | None = None,
    drop_last: bool = False,
    shard: tuple[int, int] | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield normalised (x, y) batches on ``device``; order from (data_seed, epoch).

    The epoch's order, crop offsets and flips are drawn up front on the CPU
    generator, in the order the per-batch draws always had (so the batches
    are unchanged), and reach the device in one asynchronous upload: a step
    then only slices device tensors and never waits on the host. ``shard``
    (rank, world): that rank's contiguous part of each batch, with the crops
    and flips one process would give those examples.
    """
    device = device or ds.x.device
    g = epoch_generator(data_seed, epoch)
    n = len(ds)
    order = torch.randperm(n, generator=g) if shuffle else torch.arange(n)
    bounds = batch_bounds(n, batch_size, drop_last)
    stop = bounds[-1][1] if bounds else 0
    crop = augment and ds.x.dim() == 4
    parts = [order[:stop]]
    if crop:
        per_batch = [_draw_crop_flip(hi - lo, CROP_PAD, g, ds.info.flip) for lo, hi in bounds]
        parts += [torch.cat(col) for col in zip(*per_batch)]
    packed = upload(torch.stack(parts), ds.x.device)  # (1 + draws, stop): order; dy, dx, flips
    for lo, hi in bounds:
        cols = packed[:, lo:hi]
        if shard is not None:
            b, (rank, world) = cols.shape[1], shard
            cols = cols[:, rank * b // world:(rank + 1) * b // world]
        idx = cols[0]
        xb = ds.x.index_select(0, idx).to(device, non_blocking=True)
        yb = ds.y.index_select(0, idx if ds.y.device == ds.x.device else idx.to(ds.y.device)).to(device, non_blocking=True)
        if crop:
            # Crop before normalising: padding is black, as with torchvision's RandomCrop.
            dy, dx = (cols[1], cols[2]) if CROP_PAD > 0 else (None, None)
            flips = cols[-1].bool() if ds.info.flip else None
            xb = crop_flip(xb, CROP_PAD, dy, dx, flips)
        yield normalise(xb, ds.info), yb


def num_batches(n: int, batch_size: int, drop_last: bool = False) -> int:
    return n // batch_size if drop_last else -(-n // batch_size)


def batch_bounds(n: int, batch_size: int, drop_last: bool = False) -> list[tuple[int, int]]:
    """(start, stop) of each batch of an epoch over ``n`` examples: every iterator cuts its epoch here."""
    stop = n - (n % batch_size) if drop_last else n
    return [(s, min(s + batch_size, stop)) for s in range(0, stop, batch_size)]
