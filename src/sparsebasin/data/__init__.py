"""Datasets: one entry point for every dataset the experiments use.

``load_split(name, root, split)`` returns an in-memory ``ArrayDataset``
(MNIST-1D, CIFAR-10/100, SVHN) or a lazily decoded ``ImageFolderData``
(ImageNet); ``batches(ds, ...)`` yields normalised batches on the training
device for either, with the order seeded by (data_seed, epoch) only. Nothing
here downloads: the ``download`` step fetches CIFAR/SVHN, MNIST-1D is
generated offline.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import torch

from .. import registry
from ..errors import UserError
from . import imagenet
from .base import ArrayDataset, DatasetInfo, epoch_generator, iterate_batches, normalise, num_batches, random_crop_flip
from .catalog import DATASET_NAMES, dataset_info
from .imagenet import ImageFolderData

SPLITS = ("train", "test")

__all__ = [
    "DATASET_NAMES", "SPLITS", "ArrayDataset", "DatasetInfo", "ImageFolderData",
    "batches", "check_fits", "check_name", "dataset_info", "epoch_generator", "load_split", "normalise", "num_batches",
    "num_examples", "random_crop_flip", "sample_split",
]


def load_split(
    name: str, root: str | Path, split: str, *, train_subset: int | None = None
) -> ArrayDataset | ImageFolderData:
    """Load ``split`` ("train" or "test"; ImageNet's test is val) of dataset ``name`` from ``root``.

    ``train_subset`` keeps the first N training examples (quick runs, tests);
    it leaves the test split whole. MNIST-1D uses the default config (20,000 /
    5,000, seed 0) and generates its cache on first use.
    """
    info = dataset_info(name)
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r}; use 'train' or 'test'")
    if train_subset is not None and (isinstance(train_subset, bool) or not isinstance(train_subset, int) or train_subset < 1):
        raise UserError(f"--train-subset must be a positive integer, got {train_subset!r}")
    ds = registry.module(registry.dataset(info.name)).load(info.name, root, split)
    if isinstance(ds, ArrayDataset):
        ds = _as_read(ds)
    if split == "train" and train_subset is not None:
        from .. import unhonoured

        unhonoured.sample(train_subset, len(ds), "--train-subset")  # the run records n_train, what it used
        ds = ds.subset(train_subset)
    return ds


def _as_read(ds: ArrayDataset) -> ArrayDataset:
    """The example shape is the one read (the model is built for it); labels must lie in the card's classes."""
    import dataclasses

    shape = tuple(int(d) for d in ds.x.shape[1:])
    info = ds.info
    if shape != tuple(info.input_shape):
        channels = shape[0] if len(shape) == 3 else info.in_channels
        info = dataclasses.replace(info, input_shape=shape, in_channels=channels)
    if len(ds) and (int(ds.y.min()) < 0 or int(ds.y.max()) >= info.num_classes):
        where = (ds.meta or {}).get("source", info.name)
        raise UserError(f"{where}: the {ds.split} labels run from {int(ds.y.min())} to {int(ds.y.max())}, outside the "
                        f"{info.num_classes} classes of {info.name}; the file is not {info.name} data (replace it)")
    return ds if info is ds.info else dataclasses.replace(ds, info=info)


def check_name(recorded: dict, dataset: str, source: str | Path) -> None:
    """The file was made on ``dataset`` (checked before any data is read)."""
    name = recorded.get("name")
    if name != dataset:
        raise UserError(f"{source} was trained on {name!r}, but the run has --dataset {dataset}; pass --dataset "
                        f"{name}, or a file made on the same dataset as the run ({dataset})")


def check_fits(recorded: dict, ds: ArrayDataset | ImageFolderData, source: str | Path,
               data_dir: str | Path | None = None) -> None:
    """A checkpoint's (mask's, permutation's) recorded data must be the data loaded now.

    ``recorded`` is the file's ``data`` entry (``checkpoints.data_meta``: name, classes, input); ``ds`` a
    split as loaded. Class counts and input shapes come from what is on disk (an ImageNet tree of 5 class
    folders is a 5-class dataset), so every step compares with the data it reads, never with the card.
    """
    info = ds.info
    where = (ds.meta or {}).get("source") or (Path(data_dir) if data_dir is not None else info.name)
    check_name(recorded, info.name, source)
    classes = int(recorded.get("num_classes", -1))
    if classes != int(info.num_classes):
        raise UserError(f"{source} has {classes} output classes, but the {info.name} data in {where} has "
                        f"{info.num_classes} classes; point --data-dir at the data it was trained on, or retrain it "
                        f"on this data (delete {source})")
    got = (int(info.in_channels), int(info.input_size))
    want = (int(recorded.get("in_channels", -1)), int(recorded.get("input_size", -1)))
    if got != want:
        raise UserError(f"{source} takes inputs of {want[0]} channels and {want[1]} values, but the {info.name} "
                        f"data in {where} has {got[0]} and {got[1]}; point --data-dir at the data it was trained "
                        f"on, or retrain it on this data (delete {source})")


def batches(
    ds: ArrayDataset | ImageFolderData,
    batch_size: int,
    *,
    shuffle: bool,
    data_seed: int = 0,
    epoch: int = 0,
    augment: bool = False,
    device: torch.device | str | None = None,
    drop_last: bool = False,
    shard: tuple[int, int] | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Normalised (x, y) batches on ``device``; the order depends on (data_seed, epoch) alone.

    ``shard`` (rank, world): each batch's contiguous part for that rank (data-parallel training)."""
    if not isinstance(batch_size, int) or batch_size < 1:
        raise UserError(f"batch size must be a positive integer, got {batch_size!r}")
    device = torch.device(device) if device is not None else None
    kwargs = dict(shuffle=shuffle, data_seed=data_seed, epoch=epoch, augment=augment, device=device, drop_last=drop_last,
                  shard=shard)
    if isinstance(ds, ImageFolderData):
        return imagenet.iterate_batches(ds, batch_size, **kwargs)
    return iterate_batches(ds, batch_size, **kwargs)


def num_examples(ds: ArrayDataset | ImageFolderData) -> int:
    return len(ds)


def sample_split(ds: ArrayDataset | ImageFolderData, n: int | None, seed: int = 0, what: str | None = None,
                 batch_size: int | None = None):
    """A seeded random sample of ``n`` examples of the whole split (all of it, shuffled, when n >= its size),
    and a record of it: ``{"seed", "examples", "of", "classes"}``. A sample smaller than asked is said in
    one warning line naming ``what`` (the setting) and recorded under ``unhonoured``
    (``sparsebasin.unhonoured``); with ``batch_size`` (n is batches of it) it is said in batches.

    Every "subset of the training data" (matching statistics, BN reset, REPAIR,
    evaluation on part of a split) is drawn this way. Taking the first batches
    instead would see a few classes only wherever a split is stored class by
    class: an ImageFolder tree lists ImageNet's 1.28M images by class, so 100
    batches of 256 are 20 of its 1,000 classes. The same seed gives the same
    images, so models A and B (and every interpolation point) see the same data.
    """
    total = len(ds)
    g = torch.Generator().manual_seed(int(seed))
    index = torch.randperm(total, generator=g)
    if n is not None:
        index = index[: max(0, int(n))]
    sample = ds.take(index)
    classes = int(torch.unique(sample.labels()).numel()) if len(sample) else 0
    info = {"seed": int(seed), "examples": len(sample), "of": total, "classes": classes}
    if n is not None:
        from .. import unhonoured

        what = what or f"a sample of the {ds.info.name} {getattr(ds, 'split', '')} split"
        if batch_size:
            short = unhonoured.batches(int(n) // int(batch_size), int(batch_size), total, what)
        else:
            short = unhonoured.sample(n, total, what)
        if short:
            info["unhonoured"] = short
    return sample, info


def check_on_disk(name: str, root: str | Path) -> str:
    """Verify a downloaded/placed dataset is complete and readable; return a one-line summary.

    CIFAR and SVHN are parsed in full (a truncated download fails here, not in
    a training job); ImageNet's tree is checked for matching class folders
    without scanning every file.
    """
    info = dataset_info(name)
    own = getattr(registry.module(registry.dataset(info.name)), "check", None)
    if own is not None:
        return own(info.name, root)
    train, test = load_split(name, root, "train"), load_split(name, root, "test")
    return f"{name}: {len(train)} train / {len(test)} test examples in {Path(root)}"
