"""SVHN (cropped digits) from the ``{train,test}_32x32.mat`` files torchvision downloads.

In the .mat files X is 32 x 32 x 3 x N (height, width, channel, example) and
the digit 0 carries label 10; we return NCHW uint8 images and labels 0..9.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .base import ArrayDataset
from .catalog import corrupt_data_error, dataset_info, missing_data_error

# Digits are not mirror-symmetric: crop yes, horizontal flip no.
DATASETS = [{
    "name": "svhn", "label": "SVHN", "num_classes": 10, "in_channels": 3, "input_shape": [3, 32, 32],
    "mean": [0.4377, 0.4438, 0.4728], "std": [0.1980, 0.2010, 0.1970], "augment": True, "flip": False,
    "obtain": "download", "download": {"torchvision": "SVHN", "train": {"split": "train"}, "test": {"split": "test"}},
    "scale": 1.5, "n_train": 73257, "host_mem_mb": 3000,
}]

FILES = {"train": "train_32x32.mat", "test": "test_32x32.mat"}


def expected_files(root: str | Path) -> list[Path]:
    return [Path(root) / f for f in FILES.values()]


def load(name: str, root: str | Path, split: str) -> ArrayDataset:
    import scipy.io

    path = Path(root) / FILES[split]
    if not path.exists():
        raise missing_data_error("svhn", path, root)
    try:
        mat = scipy.io.loadmat(path, variable_names=["X", "y"])
    except Exception as exc:
        raise corrupt_data_error("svhn", path, root, f"unreadable .mat: {type(exc).__name__}") from exc
    if "X" not in mat or "y" not in mat:
        raise corrupt_data_error("svhn", path, root, "missing variable X or y")
    X = np.asarray(mat["X"])
    y = np.asarray(mat["y"]).reshape(-1).astype(np.int64)
    if X.ndim != 4 or X.shape[:3] != (32, 32, 3) or X.shape[3] != y.shape[0]:
        raise corrupt_data_error("svhn", path, root, f"X shape {X.shape} with {y.shape[0]} labels, expected 32x32x3xN")
    if y.size and (y.min() < 1 or y.max() > 10):
        raise corrupt_data_error("svhn", path, root, "labels outside 1..10")
    x = torch.from_numpy(np.ascontiguousarray(np.transpose(X, (3, 2, 0, 1)), dtype=np.uint8))
    return ArrayDataset(dataset_info("svhn"), x, torch.from_numpy(y % 10), split, {"source": str(path)})
