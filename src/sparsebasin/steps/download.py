"""``download``: fetch CIFAR-10/100 or SVHN with torchvision into the data directory.

The only step that touches the network, meant for a login node; training
never downloads. The files land exactly where ``load_split`` reads them, and
are parsed once afterwards so a truncated download fails here.

A copy already on disk in that layout (from another machine, a shared
dataset folder, a symlink) is checked first, by parsing it in full as training
will, and accepted without the network: torchvision's own check compares md5
sums and would fetch the dataset again for any copy it does not recognise.
``--offline`` makes a missing or broken copy an error instead of a download.
"""

from __future__ import annotations

import argparse

from .. import data, registry
from ..errors import UserError
from .common import DATASETS, StepPaths

def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", required=True, choices=DATASETS)
    p.add_argument("--data-dir", default="data", help="dataset root (default: data)")
    p.add_argument("--offline", action="store_true",
                   help="never contact the network: only check the copy already in --data-dir")


def in_place(name: str, root: str) -> str | None:
    """The one-line check of a copy of ``name`` already in ``root``, or None when it is missing or broken
    (a file that would run code when read is refused, never replaced silently)."""
    from ..errors import UnsafeFile

    try:
        summary = data.check_on_disk(name, root)
    except UnsafeFile:
        raise
    except UserError:
        return None
    return summary + " (already in place: nothing downloaded)"


def fetch(name: str, root: str, offline: bool = False) -> str:
    """Download ``name`` into ``root`` as its card says unless a readable copy is there; returns the one-line
    check of the result."""
    card = registry.dataset(name)
    if card["obtain"] == "generate":
        return data.check_on_disk(name, root) + " (generated offline, nothing downloaded)"
    found = in_place(name, root)
    if found is not None:
        return found
    if card["obtain"] == "manual":
        how = registry.module(card).manual_instructions(root)
        raise UserError(f"{card['label']} cannot be downloaded automatically; {how}, then run "
                        f"`python -m sparsebasin prepare --dataset {name} --data-dir {root}`")
    if offline:
        data.check_on_disk(name, root)  # raises the one line that names what is missing or broken
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
    print(fetch(args.dataset, args.data_dir, offline=args.offline))


def paths(args: argparse.Namespace) -> StepPaths:
    return StepPaths()
