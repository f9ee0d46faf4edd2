"""CIFAR-10 and CIFAR-100 read straight from torchvision's on-disk pickle batches.

We parse the files ourselves rather than through torchvision's dataset
classes: those md5-check every file on construction, which is slow and rejects
the small files the tests write in the same format. Downloading belongs to the
``download`` step alone.

The batches are pickles by format, and a pickle can run code. They are read
with an unpickler that resolves only the numpy names an array needs (the
published files hold dicts of bytes, lists of ints and one uint8 array), so a
planted ``data_batch_1`` cannot run anything: it is refused in one line.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from ..errors import UnsafeFile
from .base import ArrayDataset
from .catalog import corrupt_data_error, dataset_info, download_command, missing_data_error

DATASETS = [
    {"name": "cifar10", "label": "CIFAR-10", "num_classes": 10, "in_channels": 3, "input_shape": [3, 32, 32],
     "mean": [0.4914, 0.4822, 0.4465], "std": [0.2470, 0.2435, 0.2616], "augment": True, "flip": True,
     "obtain": "download", "download": {"torchvision": "CIFAR10", "train": {"train": True}, "test": {"train": False}},
     "scale": 1.0, "n_train": 50000, "host_mem_mb": 3000},
    {"name": "cifar100", "label": "CIFAR-100", "num_classes": 100, "in_channels": 3, "input_shape": [3, 32, 32],
     "mean": [0.5071, 0.4865, 0.4409], "std": [0.2673, 0.2564, 0.2762], "augment": True, "flip": True,
     "obtain": "download", "download": {"torchvision": "CIFAR100", "train": {"train": True}, "test": {"train": False}},
     "scale": 1.0, "n_train": 50000, "host_mem_mb": 3000},
]

_LAYOUT = {
    # name: (folder, train files, test files, meta file, label key, class-names key)
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"],
                "batches.meta", "labels", "label_names"),
    "cifar100": ("cifar-100-python", ["train"], ["test"], "meta", "fine_labels", "fine_label_names"),
}


def expected_files(name: str, root: str | Path) -> list[Path]:
    folder, train, test, meta, *_ = _LAYOUT[name]
    return [Path(root) / folder / f for f in (*train, *test, meta)]


# (module, name) pairs an ndarray pickle refers to: numpy 1 and 2 spell the module differently.
_ARRAY_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
}


class _ArrayUnpickler(pickle.Unpickler):
    """Resolves the numpy array names above and nothing else (no callable that could run code)."""

    def find_class(self, module: str, name: str):
        if (module, name) in _ARRAY_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused global {module}.{name}")


def _read_pickle(name: str, path: Path, root: str | Path) -> dict:
    if path.is_dir():
        raise corrupt_data_error(name, path, root, "a directory where the batch file belongs")
    if not path.exists():
        raise missing_data_error(name, path, root)
    try:
        with open(path, "rb") as fh:
            # latin1 reads the original Python 2 pickles; keys may be str or bytes.
            obj = _ArrayUnpickler(fh, encoding="latin1").load()
    except pickle.UnpicklingError as exc:
        if str(exc).startswith("refused global"):
            raise UnsafeFile(f"{path} is not a {name} batch (unsafe content: it asks to import "
                            f"{str(exc)[len('refused global '):]}; nothing was run); delete it and rerun "
                            f"`{download_command(name, root)}`") from None
        raise corrupt_data_error(name, path, root, "unreadable pickle: UnpicklingError") from None
    except Exception as exc:
        raise corrupt_data_error(name, path, root, f"unreadable pickle: {type(exc).__name__}") from None
    if not isinstance(obj, dict):
        raise corrupt_data_error(name, path, root, "not a dict")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _read_batch(name: str, path: Path, root: str | Path, label_key: str) -> tuple[torch.Tensor, torch.Tensor]:
    obj = _read_pickle(name, path, root)
    if "data" not in obj or label_key not in obj:
        raise corrupt_data_error(name, path, root, f"missing key 'data' or {label_key!r}")
    data = np.asarray(obj["data"], dtype=np.uint8)
    labels = np.asarray(obj[label_key], dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or data.shape[0] != labels.shape[0]:
        raise corrupt_data_error(name, path, root, f"data shape {data.shape} with {labels.shape[0]} labels, expected N x 3072")
    classes = dataset_info(name).num_classes
    if labels.size and (int(labels.min()) < 0 or int(labels.max()) >= classes):  # per file: blame the one that is wrong
        bad = int(labels.min()) if int(labels.min()) < 0 else int(labels.max())
        raise corrupt_data_error(name, path, root, f"label {bad} outside [0, {classes})")
    return torch.from_numpy(data.reshape(-1, 3, 32, 32).copy()), torch.from_numpy(labels.copy())


def load(name: str, root: str | Path, split: str) -> ArrayDataset:
    """One split as uint8 NCHW images and int64 labels."""
    folder, train, test, meta_file, label_key, names_key = _LAYOUT[name]
    base = Path(root) / folder
    files = train if split == "train" else test
    parts = [_read_batch(name, base / f, root, label_key) for f in files]
    x = torch.cat([p[0] for p in parts])
    y = torch.cat([p[1] for p in parts])
    info = dataset_info(name)
    meta_path = base / meta_file
    classes = None
    if meta_path.exists():
        classes = _read_pickle(name, meta_path, root).get(names_key)
    return ArrayDataset(info, x, y, split, {"source": str(base), "classes": classes})


def write_synthetic(name: str, root: str | Path, n_train: int, n_test: int, seed: int = 0,
                    signal: float = 60.0) -> Path:
    """A CIFAR-shaped dataset in the real on-disk layout (``_LAYOUT``), learnable: class c's images are a
    fixed random pattern of class c plus noise, so a few epochs beat chance by far.

    For checks on machines without the data (benchmarks/gpu_check.py) and tests; nothing reads it as CIFAR.
    """
    folder, train_files, test_files, meta, label_key, names_key = _LAYOUT[name]
    classes = dataset_info(name).num_classes
    rng = np.random.default_rng(seed)
    patterns = rng.normal(0.0, 1.0, (classes, 3072))
    out = Path(root) / folder
    out.mkdir(parents=True, exist_ok=True)

    def batch(n: int) -> dict:
        y = rng.integers(0, classes, n)
        x = np.clip(128 + signal * patterns[y] + rng.normal(0.0, 40.0, (n, 3072)), 0, 255).astype(np.uint8)
        return {b"data": x, label_key.encode(): [int(v) for v in y]}

    for files, n in ((train_files, n_train), (test_files, n_test)):
        sizes = [n // len(files) + (i < n % len(files)) for i in range(len(files))]
        for f, size in zip(files, sizes):
            with open(out / f, "wb") as fh:
                pickle.dump(batch(size), fh)
    with open(out / meta, "wb") as fh:
        pickle.dump({names_key.encode(): [f"class{i}".encode() for i in range(classes)]}, fh)
    return Path(root)
