"""In-memory datasets and a batch iterator that augments on the training device.

Datasets that fit in device memory (MNIST-1D, CIFAR, SVHN) live as one
tensor of inputs and one of labels. Each epoch draws its order from a
generator seeded by (data_seed, epoch), so the data order is independent of
the weight-init seed and an interrupted run resumes on exactly the same
batches. Random crop with padding and horizontal flip run on whole batches, on the
raw pixels (zero padding is black, as with torchvision), before normalising.
"""

from __future__ import annotations

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
    if x.dim() == 4:
        mean = torch.tensor(info.mean, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        std = torch.tensor(info.std, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
    else:
        mean = torch.tensor(info.mean, device=x.device, dtype=x.dtype)
        std = torch.tensor(info.std, device=x.device, dtype=x.dtype)
    return (x - mean) / std


def random_crop_flip(x: torch.Tensor, pad: int, generator: torch.Generator, flip: bool = True) -> torch.Tensor:
    """Random crop (zero padding ``pad``) and horizontal flip for a whole NCHW batch.

    Offsets are drawn on the CPU generator (reproducible across devices) and
    applied with one gather, no per-image Python.
    """
    n, c, h, w = x.shape
    dev = x.device
    if pad > 0:
        xp = torch.nn.functional.pad(x, (pad, pad, pad, pad))
        dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(dev)
        dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(dev)
        rows = (dy.view(n, 1) + torch.arange(h, device=dev).view(1, h))  # n,h
        cols = (dx.view(n, 1) + torch.arange(w, device=dev).view(1, w))  # n,w
        idx_r = rows.view(n, 1, h, 1).expand(n, c, h, w + 2 * pad)
        xp = torch.gather(xp, 2, idx_r)
        idx_c = cols.view(n, 1, 1, w).expand(n, c, h, w)
        x = torch.gather(xp, 3, idx_c)
    if flip:
        f = (torch.rand(n, generator=generator) < 0.5).to(dev)
        x = torch.where(f.view(n, 1, 1, 1), x.flip(3), x)
    return x


def epoch_generator(data_seed: int, epoch: int) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed((int(data_seed) * 1_000_003 + int(epoch)) % (2**63 - 1))
    return g


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
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield normalised (x, y) batches on ``device``; order from (data_seed, epoch)."""
    device = device or ds.x.device
    g = epoch_generator(data_seed, epoch)
    n = len(ds)
    order = torch.randperm(n, generator=g) if shuffle else torch.arange(n)
    stop = n - (n % batch_size) if drop_last else n
    for start in range(0, stop, batch_size):
        idx = order[start:start + batch_size]
        xb = ds.x[idx.to(ds.x.device)].to(device, non_blocking=True)
        yb = ds.y[idx.to(ds.y.device)].to(device, non_blocking=True)
        if augment and xb.dim() == 4:
            # Crop before normalising: padding is black, as with torchvision's RandomCrop.
            xb = random_crop_flip(xb, pad=4, generator=g, flip=ds.info.flip)
        yield normalise(xb, ds.info), yb


def num_batches(n: int, batch_size: int, drop_last: bool = False) -> int:
    return n // batch_size if drop_last else -(-n // batch_size)
