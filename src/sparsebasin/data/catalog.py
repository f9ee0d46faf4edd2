"""Fixed facts about each dataset: shapes, classes, normalisation, where it lives.

Normalisation constants are per-channel statistics of each training set in
[0, 1] pixel units, so every run normalises identically whatever subset it
loads. MNIST-1D's are those of the default generated training set (20,000
examples, seed 0), measured once and written here.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import UserError
from .base import DatasetInfo

DATASET_NAMES = ("mnist1d", "cifar10", "cifar100", "svhn", "imagenet")

_INFOS = {
    "mnist1d": DatasetInfo(
        name="mnist1d", num_classes=10, in_channels=1, input_shape=(40,),
        mean=(-0.0009755066834683008,), std=(1.0007546007973294,), augment=False, flip=False,
    ),
    "cifar10": DatasetInfo(
        name="cifar10", num_classes=10, in_channels=3, input_shape=(3, 32, 32),
        mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616), augment=True,
    ),
    "cifar100": DatasetInfo(
        name="cifar100", num_classes=100, in_channels=3, input_shape=(3, 32, 32),
        mean=(0.5071, 0.4865, 0.4409), std=(0.2673, 0.2564, 0.2762), augment=True,
    ),
    # Digits are not mirror-symmetric: crop yes, horizontal flip no.
    "svhn": DatasetInfo(
        name="svhn", num_classes=10, in_channels=3, input_shape=(3, 32, 32),
        mean=(0.4377, 0.4438, 0.4728), std=(0.1980, 0.2010, 0.1970), augment=True, flip=False,
    ),
    "imagenet": DatasetInfo(
        name="imagenet", num_classes=1000, in_channels=3, input_shape=(3, 224, 224),
        mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), augment=True,
    ),
}


def dataset_info(name: str) -> DatasetInfo:
    """Shapes, class count, normalisation and default augmentation of ``name``."""
    try:
        return _INFOS[str(name).lower()]
    except KeyError:
        raise UserError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASET_NAMES)}") from None


def download_command(name: str, root: str | Path) -> str:
    return f"python -m sparsebasin download --dataset {name} --data-dir {root}"


def missing_data_error(name: str, path: Path, root: str | Path) -> UserError:
    """The one line a user sees when a dataset is not on disk: what is missing and how to get it."""
    if name == "imagenet":
        return UserError(
            f"ImageNet not found: {path} is missing; place the ImageFolder tree by hand at "
            f"{Path(root) / 'imagenet'}/train/<class>/*.JPEG and {Path(root) / 'imagenet'}/val/<class>/*.JPEG "
            "(validation images sorted into class folders); it cannot be downloaded automatically"
        )
    return UserError(
        f"{name} not found: {path} is missing; fetch it with `{download_command(name, root)}` "
        "(needs internet: run it on a login node)"
    )


def corrupt_data_error(name: str, path: Path, root: str | Path, why: str) -> UserError:
    return UserError(
        f"{path} is not a valid {name} file ({why}); delete it and rerun `{download_command(name, root)}`"
    )
