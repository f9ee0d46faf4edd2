"""Small dataset files in the real on-disk formats (CIFAR-10/100 python batches, SVHN .mat), for tests."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np


def write_cifar10(root: Path, n_per_batch: int = 4, n_test: int = 6, seed: int = 0) -> dict:
    """torchvision's cifar-10-batches-py layout; returns the arrays written."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    written = {"train_x": [], "train_y": []}
    for i in range(1, 6):
        x = rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8)
        y = [int(v) for v in rng.integers(0, 10, n_per_batch)]
        with open(folder / f"data_batch_{i}", "wb") as fh:
            pickle.dump({b"batch_label": b"training batch", b"data": x, b"labels": y, b"filenames": []}, fh)
        written["train_x"].append(x)
        written["train_y"] += y
    x = rng.integers(0, 256, (n_test, 3072), dtype=np.uint8)
    y = [int(v) for v in rng.integers(0, 10, n_test)]
    with open(folder / "test_batch", "wb") as fh:
        pickle.dump({b"data": x, b"labels": y}, fh)
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump({b"label_names": [f"c{i}" for i in range(10)], b"num_vis": 3072}, fh)
    written.update(train_x=np.concatenate(written["train_x"]), test_x=x, test_y=y)
    return written


def write_cifar100(root: Path, n_train: int = 7, n_test: int = 5) -> dict:
    rng = np.random.default_rng(1)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        x = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        fine = [int(v) for v in rng.integers(0, 100, n)]
        coarse = [int(v) for v in rng.integers(0, 20, n)]
        with open(folder / split, "wb") as fh:
            pickle.dump({b"data": x, b"fine_labels": fine, b"coarse_labels": coarse}, fh)
        out[split] = (x, fine)
    with open(folder / "meta", "wb") as fh:
        pickle.dump({b"fine_label_names": [f"f{i}" for i in range(100)]}, fh)
    return out


def write_svhn(root: Path, n_train: int = 6, n_test: int = 4) -> dict:
    import scipy.io

    rng = np.random.default_rng(2)
    root.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        X = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
        y = np.array([[10], [1], [2], [9], [10], [5]][:n], dtype=np.uint8)
        scipy.io.savemat(root / f"{split}_32x32.mat", {"X": X, "y": y})
        out[split] = (X, y)
    return out


def write_imagefolder(root: Path, classes: int = 2, per_class: int = 3, size: tuple[int, int] = (40, 40),
                      splits=("train", "val"), seed: int = 0, ext: str = "JPEG") -> Path:
    """``{root}/imagenet/{split}/c{i:03d}/img{j}.{ext}``: an ImageFolder tree stored class by class, as ImageNet's."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split in splits:
        for c in range(classes):
            d = root / "imagenet" / split / f"c{c:03d}"
            d.mkdir(parents=True, exist_ok=True)
            for j in range(per_class):
                arr = rng.integers(0, 256, (size[0], size[1], 3), dtype=np.uint8)
                Image.fromarray(arr).save(d / f"img{j}.{ext}")
    return root


def write_random_mask(init: Path, path: Path, keep: float = 0.3, seed: int = 0) -> dict:
    """A random mask (each prunable weight kept with probability ``keep``) for the model of checkpoint ``init``."""
    import torch

    from sparsebasin.checkpoints import load_checkpoint, model_from_checkpoint, save_mask
    from sparsebasin.models import prunable_keys

    model = model_from_checkpoint(init)
    ckpt = load_checkpoint(init)
    g = torch.Generator().manual_seed(seed)
    mask = {k: torch.rand(p.shape, generator=g) < keep for k, p in model.named_parameters() if k in prunable_keys(model)}
    save_mask(path, mask, ckpt["model"], ckpt["data"], {"overall": keep})
    return mask
