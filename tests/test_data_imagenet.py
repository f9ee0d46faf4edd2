"""ImageNet path on a tiny generated ImageFolder tree (2 classes x 3 images)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from sparsebasin import data
from sparsebasin.data import imagenet
from sparsebasin.errors import UserError


@pytest.fixture
def tree(tmp_path) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for cls in ("n01", "n02"):
            d = tmp_path / "imagenet" / split / cls
            d.mkdir(parents=True)
            for i in range(3):
                arr = rng.integers(0, 256, (30 + 4 * i, 40, 3), dtype=np.uint8)
                ext = "JPEG" if i % 2 else "png"
                Image.fromarray(arr).save(d / f"img{i}.{ext}")
    return tmp_path


def _epoch(ds, **kw):
    xs, ys = zip(*data.batches(ds, 4, **kw))
    return torch.cat(xs), torch.cat(ys)


def test_loads_tree_with_class_indices(tree):
    train = data.load_split("imagenet", tree, "train")
    val = data.load_split("imagenet", tree, "test")
    assert isinstance(train, data.ImageFolderData)
    assert data.num_examples(train) == 6 and len(val) == 6
    assert train.classes == ["n01", "n02"] and train.info.num_classes == 2
    assert train.y.tolist() == [0, 0, 0, 1, 1, 1]
    assert val.root == tree / "imagenet" / "val"
    assert len(data.load_split("imagenet", tree, "train", train_subset=4)) == 4


def test_eval_batches_are_center_crops_normalised(tree):
    ds = data.load_split("imagenet", tree, "test")
    ds.num_workers = 0
    x, y = _epoch(ds, shuffle=False)
    assert x.shape == (6, 3, 224, 224) and x.dtype == torch.float32 and y.tolist() == [0, 0, 0, 1, 1, 1]
    lo = (0 - torch.tensor(ds.info.mean)) / torch.tensor(ds.info.std)
    hi = (1 - torch.tensor(ds.info.mean)) / torch.tensor(ds.info.std)
    assert (x.amin(dim=(0, 2, 3)) >= lo - 1e-5).all() and (x.amax(dim=(0, 2, 3)) <= hi + 1e-5).all()
    x2, _ = _epoch(ds, shuffle=False, epoch=5)
    assert torch.equal(x, x2)  # no randomness without augmentation


def test_augmented_order_and_crops_seeded_and_worker_independent(tree):
    ds = data.load_split("imagenet", tree, "train")
    ds.num_workers = 0
    torch.manual_seed(1)
    before = torch.get_rng_state()
    x1, y1 = _epoch(ds, shuffle=True, data_seed=2, epoch=0, augment=True)
    assert torch.equal(torch.get_rng_state(), before)  # caller's RNG untouched
    torch.manual_seed(77)
    x2, y2 = _epoch(ds, shuffle=True, data_seed=2, epoch=0, augment=True)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    x3, _ = _epoch(ds, shuffle=True, data_seed=2, epoch=1, augment=True)
    assert not torch.equal(x1, x3)
    ds.num_workers = 1
    x4, y4 = _epoch(ds, shuffle=True, data_seed=2, epoch=0, augment=True)
    assert torch.equal(x1, x4) and torch.equal(y1, y4)


def test_tree_checks(tree):
    assert imagenet.check_tree(tree) == ["n01", "n02"]
    (tree / "imagenet" / "val" / "n03").mkdir()
    with pytest.raises(UserError, match="different class folders.*n03"):
        imagenet.check_tree(tree)
    (tree / "imagenet" / "val" / "n03").rmdir()
    with pytest.raises(UserError, match="ImageNet not found"):
        imagenet.check_tree(tree / "elsewhere")


def test_workers_env_override(monkeypatch):
    monkeypatch.setenv("SPARSEBASIN_WORKERS", "3")
    assert imagenet.default_workers() == 3
    monkeypatch.setenv("SPARSEBASIN_WORKERS", "many")
    with pytest.raises(UserError, match="SPARSEBASIN_WORKERS"):
        imagenet.default_workers()
