"""ImageNet from an ImageFolder tree, decoded by DataLoader workers.

Layout: ``{root}/imagenet/{train,val}/<class>/<image>``; the test split is val.
Workers decode and crop to uint8 tensors (RandomResizedCrop(224) + flip with
augmentation, Resize(256) + CenterCrop(224) without); normalisation happens
on the training device, which moves a quarter of the bytes float32 would.

Reproducibility: the order is a permutation drawn from (data_seed, epoch), and
each image's random crop is drawn from a CPU generator seeded by (that epoch's
seed, image index) inside ``torch.random.fork_rng``, so augmentations do not
depend on the number of workers and never touch the caller's global RNG.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import torch

from ..errors import UserError
from .base import DatasetInfo, batch_bounds, epoch_generator, normalise
from . import jpeg as gpu_decoder  # noqa: F401 - benchmarks/gpu_check.py checks it on the device
from .catalog import dataset_info, missing_data_error

DATASETS = [{
    "name": "imagenet", "label": "ImageNet", "num_classes": 1000, "in_channels": 3, "input_shape": [3, 224, 224],
    "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "augment": True, "flip": True,
    "obtain": "manual", "download": None, "scale": 1.0, "n_train": 1281167,
    # the file list, 8 PIL workers and their prefetched batches (about 2.5 GB at batch 256), not the images
    "host_mem_mb": 10000,
}]

SPLIT_DIRS = {"train": "train", "test": "val"}
IMAGE_SIZE, RESIZE = gpu_decoder.IMAGE_SIZE, gpu_decoder.RESIZE  # one definition for both input paths


def default_workers() -> int:
    """Workers per loader: the CPUs this process may use, at most 8 (``SPARSEBASIN_WORKERS`` overrides)."""
    env = os.environ.get("SPARSEBASIN_WORKERS")
    if env is not None:
        try:
            return max(0, int(env))
        except ValueError:
            raise UserError(f"SPARSEBASIN_WORKERS must be an integer, got {env!r}") from None
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return min(8, cpus)


@dataclass
class ImageFolderData:
    """An ImageFolder split: file paths and labels, decoded lazily by ``iterate_batches``."""

    info: DatasetInfo
    root: Path
    split: str
    samples: list[tuple[str, int]]
    classes: list[str]
    num_workers: int = field(default_factory=default_workers)
    meta: dict = field(default_factory=dict)
    decode: str = "pil"  # or "device": JPEGs decoded where the model runs (sparsebasin.data.jpeg)

    def __len__(self) -> int:
        return len(self.samples)

    def to(self, device: torch.device) -> "ImageFolderData":
        """Images are decoded per batch, so there is nothing to move; ``batches`` takes the device."""
        return self

    def subset(self, n: int) -> "ImageFolderData":
        return dataclasses.replace(self, samples=self.samples[:n])

    def take(self, index: torch.Tensor) -> "ImageFolderData":
        """The images at ``index``, in that order (nothing is decoded here)."""
        return dataclasses.replace(self, samples=[self.samples[int(i)] for i in index.tolist()])

    def labels(self) -> torch.Tensor:
        return self.y

    @property
    def y(self) -> torch.Tensor:
        return torch.tensor([c for _, c in self.samples], dtype=torch.int64)


def split_dir(root: str | Path, split: str) -> Path:
    return Path(root) / "imagenet" / SPLIT_DIRS[split]


def _classes(path: Path, root: str | Path) -> list[str]:
    if not path.is_dir():
        raise missing_data_error("imagenet", path, root)
    classes = sorted(e.name for e in os.scandir(path) if e.is_dir())
    if not classes:
        raise UserError(f"{path} has no class folders; ImageNet needs {path}/<class>/<image> (see the prepare step)")
    return classes


def check_tree(root: str | Path) -> list[str]:
    """Both splits exist with the same class folders; returns the class names (no file scan)."""
    train = _classes(split_dir(root, "train"), root)
    val = _classes(split_dir(root, "test"), root)
    if train != val:
        only = sorted(set(train) ^ set(val))[:3]
        raise UserError(
            f"{split_dir(root, 'train')} and {split_dir(root, 'test')} have different class folders "
            f"(e.g. {', '.join(only)}); sort the validation images into the same class folders as train"
        )
    return train


def manual_instructions(root: str | Path) -> str:
    """How a user puts ImageNet in place (it cannot be downloaded)."""
    return (f"place the ImageFolder tree by hand at {Path(root) / 'imagenet'}/train/<class>/*.JPEG and "
            f"{Path(root) / 'imagenet'}/val/<class>/*.JPEG (validation images sorted into class folders)")


def missing_error(path: Path, root: str | Path) -> UserError:
    return UserError(f"ImageNet not found: {path} is missing; {manual_instructions(root)}; "
                     "it cannot be downloaded automatically")


def check(name: str, root: str | Path) -> str:
    classes = check_tree(root)
    return f"imagenet: {len(classes)} classes in {split_dir(root, 'train')} and {split_dir(root, 'test')}"


def load(name: str, root: str | Path, split: str) -> ImageFolderData:
    """One split; its labels index the train split's class folders, so a label means one class in both
    (a val tree missing a folder would otherwise shift every later class by one)."""
    path = split_dir(root, split)
    classes = _classes(path, root) if split == "train" else check_tree(root)
    from torchvision.datasets.folder import IMG_EXTENSIONS, make_dataset

    class_to_idx = {c: i for i, c in enumerate(classes)}
    try:
        samples = make_dataset(str(path), class_to_idx, extensions=IMG_EXTENSIONS)
    except FileNotFoundError as exc:
        raise UserError(f"{path}: {exc}; every class folder needs at least one image") from exc
    # The class count is what is on disk (1000 for ImageNet, fewer for a test tree).
    info = dataclasses.replace(dataset_info("imagenet"), num_classes=len(classes))
    return ImageFolderData(info, path, split, samples, classes, meta={"source": str(path)})


class _Decoded(torch.utils.data.Dataset):
    """Index -> (uint8 CHW image, label), the crop drawn from a per-image seeded generator."""

    def __init__(self, samples: list[tuple[str, int]], augment: bool, seed: int):
        from torchvision import transforms

        self.samples = samples
        self.seed = seed
        if augment:
            self.transform = transforms.Compose([
                transforms.RandomResizedCrop(IMAGE_SIZE), transforms.RandomHorizontalFlip(), transforms.PILToTensor(),
            ])
        else:
            self.transform = transforms.Compose([
                transforms.Resize(RESIZE), transforms.CenterCrop(IMAGE_SIZE), transforms.PILToTensor(),
            ])

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        path, label = self.samples[index]
        with open(path, "rb") as fh:
            image = Image.open(fh).convert("RGB")
        with torch.random.fork_rng(devices=[]):
            torch.random.default_generator.manual_seed((self.seed + index) % (2**63 - 1))
            x = self.transform(image)
        return x, label


def iterate_batches(
    ds: ImageFolderData,
    batch_size: int,
    *,
    shuffle: bool,
    data_seed: int = 0,
    epoch: int = 0,
    augment: bool = False,
    device: torch.device | None = None,
    drop_last: bool = False,
    shard: tuple[int, int] | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield normalised (x, y) batches on ``device``; order and crops from (data_seed, epoch).

    ``shard`` (rank, world): that rank's contiguous part of each batch; an image's crop depends on its index
    alone, so it is the one a single process would decode."""
    device = torch.device(device or "cpu")
    g = epoch_generator(data_seed, epoch)
    n = len(ds)
    order = torch.randperm(n, generator=g).tolist() if shuffle else list(range(n))
    crop_seed = int(torch.randint(0, 2**62, (1,), generator=g))
    parts = [order[lo:hi] for lo, hi in batch_bounds(n, batch_size, drop_last)]
    if shard is not None:
        rank, world = shard
        parts = [p[rank * len(p) // world:(rank + 1) * len(p) // world] for p in parts]
    if ds.decode == "device":
        from . import jpeg

        loader = torch.utils.data.DataLoader(
            jpeg.RawFiles(ds.samples), batch_sampler=parts, num_workers=ds.num_workers, collate_fn=jpeg.collate,
            prefetch_factor=4 if ds.num_workers > 0 else None,
            generator=torch.Generator().manual_seed(crop_seed))
        for data, yb, index in loader:
            xb = jpeg.batch(data, index, crop_seed, augment, device)
            yield normalise(xb, ds.info), yb.to(device, non_blocking=True)
        return
    loader = torch.utils.data.DataLoader(
        _Decoded(ds.samples, augment, crop_seed),
        batch_sampler=parts,
        num_workers=ds.num_workers,
        pin_memory=device.type == "cuda",
        prefetch_factor=4 if ds.num_workers > 0 else None,
        # the loader draws worker base seeds; from its own generator, never the global one
        generator=torch.Generator().manual_seed(crop_seed),
    )
    for xb, yb in loader:
        xb = xb.to(device, non_blocking=True)
        yield normalise(xb, ds.info), yb.to(device, non_blocking=True)
