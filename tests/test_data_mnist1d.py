"""MNIST-1D: deterministic offline generation, a checksummed cache, untouched global RNGs."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from sparsebasin import data
from sparsebasin.data import mnist1d
from sparsebasin.errors import UserError

SMALL = mnist1d.MNIST1DConfig(n_train=60, n_test=40, seed=0)


def test_same_seed_same_tensors_different_seed_different():
    a, b = mnist1d.generate(SMALL), mnist1d.generate(SMALL)
    for key in ("x_train", "y_train", "x_test", "y_test"):
        assert torch.equal(a[key], b[key])
    c = mnist1d.generate(mnist1d.MNIST1DConfig(60, 40, seed=1))
    assert not torch.equal(a["x_train"], c["x_train"])
    assert a["x_train"].shape == (60, 40) and a["x_train"].dtype == torch.float32
    assert a["x_test"].shape == (40, 40) and a["y_test"].dtype == torch.int64
    assert set(a["y_train"].tolist()) <= set(range(10))


def test_counts_not_a_multiple_of_ten():
    d = mnist1d.generate(mnist1d.MNIST1DConfig(n_train=13, n_test=4, seed=2))
    assert d["x_train"].shape == (13, 40) and d["x_test"].shape == (4, 40)


def test_global_rngs_untouched(tmp_path):
    np.random.seed(123)
    random.seed(7)
    torch.manual_seed(5)
    np_before, py_before, torch_before = np.random.get_state(), random.getstate(), torch.get_rng_state()
    mnist1d.load("mnist1d", tmp_path, "train", SMALL)
    np_after = np.random.get_state()
    assert np_before[0] == np_after[0] and np.array_equal(np_before[1], np_after[1]) and np_before[2:] == np_after[2:]
    assert random.getstate() == py_before
    assert torch.equal(torch.get_rng_state(), torch_before)


def test_cache_is_one_named_file_with_checksum_and_loads_back(tmp_path):
    ds = mnist1d.load("mnist1d", tmp_path, "train", SMALL)
    files = sorted(p.name for p in (tmp_path / "mnist1d").iterdir())
    assert files == ["mnist1d_train60_test40_seed0.pt", "mnist1d_train60_test40_seed0.pt.sha256"]
    path = mnist1d.cache_path(tmp_path, SMALL)
    assert mnist1d.checksum_path(path).read_text().endswith(f"  {path.name}\n")  # sha256sum -c format
    assert torch.equal(ds.x, mnist1d.generate(SMALL)["x_train"])
    test = mnist1d.load("mnist1d", tmp_path, "test", SMALL)
    assert len(test) == 40 and test.info.name == "mnist1d"


def test_cache_bytes_depend_only_on_config(tmp_path):
    """Concurrent jobs may both generate; they must write identical bytes."""
    p1 = mnist1d.ensure_cache(tmp_path / "a", SMALL)
    p2 = mnist1d.ensure_cache(tmp_path / "b", SMALL)
    assert p1.read_bytes() == p2.read_bytes()
    assert not list((tmp_path / "a" / "mnist1d").glob("*.tmp"))


def test_checksum_mismatch_is_a_user_error(tmp_path):
    path = mnist1d.ensure_cache(tmp_path, SMALL)
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(UserError) as err:
        mnist1d.load("mnist1d", tmp_path, "train", SMALL)
    msg = str(err.value)
    assert str(path) in msg and "delete it" in msg and "\n" not in msg
    assert f"python -m sparsebasin prepare --dataset mnist1d --data-dir {tmp_path} --n-train 60 --n-test 40 --seed 0" in msg


def test_missing_sidecar_regenerates(tmp_path):
    path = mnist1d.ensure_cache(tmp_path, SMALL)
    before = path.read_bytes()
    mnist1d.checksum_path(path).unlink()
    assert mnist1d.ensure_cache(tmp_path, SMALL).read_bytes() == before
    assert mnist1d.checksum_path(path).exists()


def test_bad_config_is_a_user_error():
    with pytest.raises(UserError, match="--n-train"):
        mnist1d.MNIST1DConfig(n_train=0)
    with pytest.raises(UserError, match="--seed"):
        mnist1d.MNIST1DConfig(seed=-1)


def test_load_split_default_path_and_batches(tmp_path, monkeypatch):
    """load_split uses the default config; patch generation small so the test is quick."""
    small = {k: v for k, v in mnist1d.generate(SMALL).items()}
    monkeypatch.setattr(mnist1d, "generate", lambda config: {**small, "config": {"n_train": config.n_train,
                                                                                 "n_test": config.n_test,
                                                                                 "seed": config.seed}})
    ds = data.load_split("mnist1d", tmp_path, "train", train_subset=50)
    assert len(ds) == 50 and (tmp_path / "mnist1d" / "mnist1d_train20000_test5000_seed0.pt").exists()
    xb, yb = next(iter(data.batches(ds, 16, shuffle=True, data_seed=1, augment=True)))
    info = ds.info
    assert xb.shape == (16, 40)
    # 2-D inputs are never cropped or flipped, only standardised
    idx = torch.randperm(50, generator=data.epoch_generator(1, 0))[:16]
    assert torch.allclose(xb, (ds.x[idx] - info.mean[0]) / info.std[0])
    assert torch.equal(yb, ds.y[idx])


@pytest.mark.slow
def test_default_config_matches_hardcoded_normalisation():
    """The catalogue's mean/std are those of the default training set (about 5 s to generate)."""
    d = mnist1d.generate()
    x = d["x_train"].double()
    assert d["x_train"].shape == (20_000, 40) and d["x_test"].shape == (5_000, 40)
    info = data.dataset_info("mnist1d")
    assert abs(float(x.mean()) - info.mean[0]) < 1e-6 and abs(float(x.std()) - info.std[0]) < 1e-4


@pytest.mark.parametrize("n,seed,shuffle_seq", [(500, 0, False), (300, 7, True)])
def test_fast_generator_is_the_package_bit_for_bit(n, seed, shuffle_seq):
    """Our make_dataset port (np.interp directly, the unused time axis skipped) draws the same data."""
    from mnist1d.data import get_dataset_args, make_dataset

    from sparsebasin.data.mnist1d import _make_dataset

    args = get_dataset_args()
    args.num_samples, args.seed, args.shuffle_seq = n, seed, shuffle_seq
    ref, ours = make_dataset(args), _make_dataset(args)
    for key in ("x", "x_test", "y", "y_test"):
        assert ref[key].dtype == ours[key].dtype and np.array_equal(ref[key], ours[key]), key
