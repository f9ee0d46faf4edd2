"""Fixed facts about each dataset: shapes, classes, normalisation, where it lives.

The facts live in each dataset module's card (``DATASETS``, read by
``sparsebasin.registry``). Normalisation constants are per-channel statistics
of each training set in [0, 1] pixel units, so every run normalises
identically whatever subset it loads.
"""

from __future__ import annotations

from pathlib import Path

from .. import registry
from ..errors import UserError
from .base import DatasetInfo

DATASET_NAMES = registry.dataset_names()


def _info(card: dict) -> DatasetInfo:
    return DatasetInfo(name=card["name"], num_classes=int(card["num_classes"]), in_channels=int(card["in_channels"]),
                       input_shape=tuple(card["input_shape"]), mean=tuple(card["mean"]), std=tuple(card["std"]),
                       augment=bool(card["augment"]), flip=bool(card["flip"]))


def dataset_info(name: str) -> DatasetInfo:
    """Shapes, class count, normalisation and default augmentation of ``name`` (from its module's card)."""
    return _info(registry.dataset(name))


def download_command(name: str, root: str | Path) -> str:
    return f"python -m sparsebasin download --dataset {name} --data-dir {root}"


def missing_data_error(name: str, path: Path, root: str | Path) -> UserError:
    """The one line a user sees when a dataset is not on disk: what is missing and how to get it."""
    card = registry.dataset(name)
    own = getattr(registry.module(card), "missing_error", None) if card["obtain"] == "manual" else None
    if own is not None:
        return own(path, root)
    return UserError(
        f"{name} not found: {path} is missing; fetch it with `{download_command(name, root)}` "
        "(needs internet: run it on a login node)"
    )


def corrupt_data_error(name: str, path: Path, root: str | Path, why: str) -> UserError:
    return UserError(
        f"{path} is not a valid {name} file ({why}); delete it and rerun `{download_command(name, root)}`"
    )
