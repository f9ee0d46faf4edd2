"""On-device augmentation is a real random crop + flip, and data order depends on
(data_seed, epoch) only."""

from __future__ import annotations

import pytest
import torch

from sparsebasin import data
from sparsebasin.data import ArrayDataset, random_crop_flip


def _images(n=16, c=3, h=8, w=8, seed=0) -> torch.Tensor:
    # distinct positive values, so a crop can be located unambiguously (zero = padding)
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(n * c * h * w, generator=g).view(n, c, h, w).float() + 1


def _which_crop(img: torch.Tensor, out: torch.Tensor, pad: int, allow_flip: bool):
    """(dy, dx, flipped) such that ``out`` is that crop of the zero-padded ``img``, or None."""
    c, h, w = img.shape
    padded = torch.nn.functional.pad(img, (pad, pad, pad, pad))
    for flipped in (False, True) if allow_flip else (False,):
        for dy in range(2 * pad + 1):
            for dx in range(2 * pad + 1):
                crop = padded[:, dy:dy + h, dx:dx + w]
                if torch.equal(crop.flip(2) if flipped else crop, out):
                    return dy, dx, flipped
    return None


def test_pad_zero_without_flip_is_identity():
    x = _images()
    assert torch.equal(random_crop_flip(x, 0, torch.Generator().manual_seed(0), flip=False), x)


def test_outputs_are_crops_of_the_padded_image_and_flips_happen():
    x = _images(n=64)
    out = random_crop_flip(x, 4, torch.Generator().manual_seed(1))
    found = [_which_crop(x[i], out[i], 4, allow_flip=True) for i in range(64)]
    assert all(f is not None for f in found)
    flips = sum(f[2] for f in found)
    assert 10 < flips < 54
    assert len({(f[0], f[1]) for f in found}) > 20  # offsets vary
    assert {f[0] for f in found} <= set(range(9)) and len({f[0] for f in found}) > 4


def test_flip_only_with_zero_pad():
    x = _images(n=64)
    out = random_crop_flip(x, 0, torch.Generator().manual_seed(2))
    flipped = [torch.equal(out[i], x[i].flip(2)) for i in range(64)]
    same = [torch.equal(out[i], x[i]) for i in range(64)]
    assert all(f or s for f, s in zip(flipped, same)) and 10 < sum(flipped) < 54


def test_uint8_crop_pads_black_and_is_reproducible():
    x = torch.full((32, 3, 8, 8), 255, dtype=torch.uint8)
    a = random_crop_flip(x, 4, torch.Generator().manual_seed(3))
    b = random_crop_flip(x, 4, torch.Generator().manual_seed(3))
    c = random_crop_flip(x, 4, torch.Generator().manual_seed(4))
    assert a.dtype == torch.uint8 and torch.equal(a, b) and not torch.equal(a, c)
    assert set(a.unique().tolist()) == {0, 255}


def _toy(n=40, flip=True) -> ArrayDataset:
    info = data.dataset_info("cifar10") if flip else data.dataset_info("svhn")
    g = torch.Generator().manual_seed(0)
    x = torch.randint(1, 256, (n, 3, 8, 8), generator=g, dtype=torch.uint8)
    return ArrayDataset(info, x, torch.arange(n))


def _epoch(ds, **kw):
    xs, ys = zip(*data.batches(ds, 16, **kw))
    return torch.cat(xs), torch.cat(ys)


def test_order_depends_on_data_seed_and_epoch_only():
    ds = _toy()
    torch.manual_seed(0)
    x1, y1 = _epoch(ds, shuffle=True, data_seed=3, epoch=2, augment=True)
    torch.manual_seed(999)
    torch.rand(10)
    x2, y2 = _epoch(ds, shuffle=True, data_seed=3, epoch=2, augment=True)
    assert torch.equal(y1, y2) and torch.equal(x1, x2)
    assert sorted(y1.tolist()) == list(range(40))  # every example once
    _, y_other_seed = _epoch(ds, shuffle=True, data_seed=4, epoch=2)
    _, y_other_epoch = _epoch(ds, shuffle=True, data_seed=3, epoch=3)
    assert not torch.equal(y1, y_other_seed) and not torch.equal(y1, y_other_epoch)
    _, y_plain = _epoch(ds, shuffle=False, data_seed=3, epoch=3)
    assert y_plain.tolist() == list(range(40))


def test_global_torch_rng_untouched_by_batches():
    ds = _toy()
    torch.manual_seed(11)
    before = torch.get_rng_state()
    _epoch(ds, shuffle=True, data_seed=1, augment=True)
    assert torch.equal(torch.get_rng_state(), before)


def test_augmented_batches_are_normalised_crops_and_differ_across_epochs():
    ds = _toy()
    info = ds.info
    mean = torch.tensor(info.mean).view(3, 1, 1)
    std = torch.tensor(info.std).view(3, 1, 1)
    x0, y0 = _epoch(ds, shuffle=True, data_seed=0, epoch=0, augment=True)
    x1, _ = _epoch(ds, shuffle=True, data_seed=0, epoch=1, augment=True)
    assert not torch.equal(x0, x1)
    flips = 0
    for xi, yi in zip(x0, y0):
        raw = torch.round((xi * std + mean) * 255)  # undo normalisation; padding comes back as 0 (black)
        found = _which_crop(ds.x[yi].float(), raw, 4, allow_flip=True)
        assert found is not None
        flips += found[2]
    assert flips > 0


def test_no_flip_for_digit_datasets():
    ds = _toy(flip=False)
    info = ds.info
    mean = torch.tensor(info.mean).view(3, 1, 1)
    std = torch.tensor(info.std).view(3, 1, 1)
    x, y = _epoch(ds, shuffle=True, data_seed=5, augment=True)
    for xi, yi in zip(x, y):
        raw = torch.round((xi * std + mean) * 255)
        assert _which_crop(ds.x[yi].float(), raw, 4, allow_flip=False) is not None


@pytest.mark.parametrize("flip", [True, False])
@pytest.mark.parametrize("n,bs,drop_last", [(103, 16, False), (103, 16, True), (32, 32, False)])
def test_epoch_draws_up_front_give_the_per_batch_draws_batches(n, bs, drop_last, flip):
    """The iterator draws the epoch's crops and flips before its first batch; the batches are those of drawing
    them batch by batch (the order every earlier version used), so results and resumes are unchanged."""
    import dataclasses

    from sparsebasin.data import base, dataset_info

    info = dataclasses.replace(dataset_info("cifar10"), flip=flip)
    g = torch.Generator().manual_seed(1)
    ds = base.ArrayDataset(info, torch.randint(0, 256, (n, 3, 8, 8), generator=g, dtype=torch.uint8),
                           torch.randint(0, 10, (n,), generator=g))
    got = list(base.iterate_batches(ds, bs, shuffle=True, data_seed=3, epoch=2, augment=True, drop_last=drop_last))
    gen = base.epoch_generator(3, 2)
    order = torch.randperm(n, generator=gen)
    stop = n - n % bs if drop_last else n
    want = []
    for s in range(0, stop, bs):
        idx = order[s:s + bs]
        want.append((base.normalise(base.random_crop_flip(ds.x[idx], 4, gen, flip=flip), info), ds.y[idx]))
    assert len(got) == len(want)
    for (x, y), (wx, wy) in zip(got, want):
        assert torch.equal(x, wx) and torch.equal(y, wy)
