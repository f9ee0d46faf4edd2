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


def test_device_decoding_gives_the_pil_paths_crops_whatever_the_ranks(tmp_path):
    """--imagenet-decode device (torchvision.io.decode_jpeg where the model runs; CPU here): every image is the
    PIL path's crop and flip up to decoder/resampling rounding, for any number of ranks; PNGs are decoded too."""
    import dataclasses

    import numpy as np
    from PIL import Image

    from sparsebasin.data import batches, load_split

    for split in ("train", "val"):
        for c in range(2):
            d = tmp_path / "imagenet" / split / f"c{c}"
            d.mkdir(parents=True)
            for j in range(4):
                yy, xx = np.mgrid[0:60 + 10 * j, 0:80]
                arr = np.stack([xx * 3 % 256, yy * 4 % 256, (xx + yy + 40 * c) % 256], 2).astype(np.uint8)
                Image.fromarray(arr).save(d / f"i{j}.{'png' if j == 3 else 'JPEG'}", quality=95)
    pil = load_split("imagenet", tmp_path, "train")
    pil = dataclasses.replace(pil, num_workers=0)
    dev = dataclasses.replace(pil, decode="device")
    for augment in (True, False):
        a = list(batches(pil, 4, shuffle=True, data_seed=1, epoch=2, augment=augment))
        b = list(batches(dev, 4, shuffle=True, data_seed=1, epoch=2, augment=augment))
        for (xa, ya), (xb, yb) in zip(a, b):
            assert torch.equal(ya, yb)
            assert float((xa - xb).abs().mean()) < 0.05, "same crops, pixels within rounding"  # normalised units
        shards = [list(batches(dev, 4, shuffle=True, data_seed=1, epoch=2, augment=augment, shard=(r, 2)))
                  for r in range(2)]
        for i, (xb, _) in enumerate(b):
            assert torch.equal(torch.cat([shards[0][i][0], shards[1][i][0]]), xb)
    other = list(batches(dev, 4, shuffle=True, data_seed=1, epoch=3, augment=True))
    assert float((other[0][0] - b[0][0]).abs().mean()) > 0.1  # another epoch: other crops (the check can fail)
