"""``download``: fetch CIFAR-10/100 or SVHN with torchvision into the data directory.

The only step that touches the network, meant for a login node; training
never downloads. The files land exactly where ``load_split`` reads them, and
are parsed once afterwards so a truncated download fails here.
"""

from __future__ import annotations

import argparse

from .. import data
from ..errors import UserError
from .common import DATASETS, StepPaths

# dataset -> (torchvision class name, keyword arguments for the train split, for the test split)
_TORCHVISION = {
    "cifar10": ("CIFAR10", {"train": True}, {"train": False}),
    "cifar100": ("CIFAR100", {"train": True}, {"train": False}),
    "svhn": ("SVHN", {"split": "train"}, {"split": "test"}),
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", required=True, choices=DATASETS)
    p.add_argument("--data-dir", default="data", help="dataset root (default: data)")


def fetch(name: str, root: str) -> str:
    """Download ``name`` into ``root``; returns the one-line check of the result."""
    if name == "imagenet":
        raise UserError(
            f"ImageNet cannot be downloaded automatically; place the ImageFolder tree at {root}/imagenet/train/<class>/* "
            f"and {root}/imagenet/val/<class>/*, then run `python -m sparsebasin prepare --dataset imagenet --data-dir {root}`"
        )
    if name == "mnist1d":
        return data.check_on_disk("mnist1d", root) + " (generated offline, nothing downloaded)"
    from torchvision import datasets

    cls_name, train_kw, test_kw = _TORCHVISION[name]
    cls = getattr(datasets, cls_name)
    for kw in (train_kw, test_kw):
        try:
            cls(root, download=True, **kw)
        except Exception as exc:  # URLError, md5 mismatch (RuntimeError), disk full
            raise UserError(
                f"downloading {name} into {root} failed ({type(exc).__name__}: {exc}); "
                "check the internet connection (compute nodes often have none: run this on a login node)"
            ) from exc
    return data.check_on_disk(name, root)


def run(args: argparse.Namespace) -> None:
    print(fetch(args.dataset, args.data_dir))


def paths(args: argparse.Namespace) -> StepPaths:
    return StepPaths()
