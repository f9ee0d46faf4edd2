"""``download``: fetch CIFAR-10/100 or SVHN with torchvision into the data directory.

The only step that touches the network, meant for a login node; training
never downloads. The files land exactly where ``load_split`` reads them, and
are parsed once afterwards so a truncated download fails here.
"""

from __future__ import annotations

import argparse

from .. import data, registry
from ..errors import UserError
from .common import DATASETS, StepPaths

def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", required=True, choices=DATASETS)
    p.add_argument("--data-dir", default="data", help="dataset root (default: data)")


def fetch(name: str, root: str) -> str:
    """Download ``name`` into ``root`` as its card says; returns the one-line check of the result."""
    card = registry.dataset(name)
    if card["obtain"] == "manual":
        how = registry.module(card).manual_instructions(root)
        raise UserError(f"{card['label']} cannot be downloaded automatically; {how}, then run "
                        f"`python -m sparsebasin prepare --dataset {name} --data-dir {root}`")
    if card["obtain"] == "generate":
        return data.check_on_disk(name, root) + " (generated offline, nothing downloaded)"
    from torchvision import datasets

    how = card["download"]
    cls = getattr(datasets, how["torchvision"])
    for kw in (how["train"], how["test"]):
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
