"""CIFAR-10/100 and SVHN readers on small files written in the real on-disk format,
the dataset catalogue, missing / corrupt data errors, subsets and batch dispatch."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from datafiles import write_cifar10, write_cifar100, write_svhn

from sparsebasin import data
from sparsebasin.errors import UserError


def test_dataset_info_catalogue():
    c10 = data.dataset_info("cifar10")
    assert (c10.num_classes, c10.in_channels, c10.input_shape, c10.augment) == (10, 3, (3, 32, 32), True)
    assert data.dataset_info("cifar100").num_classes == 100
    m = data.dataset_info("mnist1d")
    assert (m.num_classes, m.in_channels, m.input_shape, m.augment, m.input_size) == (10, 1, (40,), False, 40)
    assert data.dataset_info("svhn").augment and not data.dataset_info("svhn").flip
    inet = data.dataset_info("imagenet")
    assert (inet.num_classes, inet.input_shape, inet.mean) == (1000, (3, 224, 224), (0.485, 0.456, 0.406))
    with pytest.raises(UserError, match="unknown dataset 'mnist'"):
        data.dataset_info("mnist")


def test_cifar10_reads_torchvision_pickles(tmp_path):
    w = write_cifar10(tmp_path)
    train = data.load_split("cifar10", tmp_path, "train")
    test = data.load_split("cifar10", tmp_path, "test")
    assert train.x.shape == (20, 3, 32, 32) and train.x.dtype == torch.uint8
    assert torch.equal(train.x.reshape(20, -1), torch.from_numpy(w["train_x"]))
    assert train.y.tolist() == w["train_y"] and train.y.dtype == torch.int64
    assert test.y.tolist() == w["test_y"] and len(test) == 6
    # channel-major rows: first 1024 bytes are the red plane
    assert torch.equal(train.x[0, 0].reshape(-1), torch.from_numpy(w["train_x"][0, :1024]))
    assert train.meta["classes"][3] == "c3"
    assert data.num_examples(train) == 20


def test_cifar100_fine_labels(tmp_path):
    w = write_cifar100(tmp_path)
    train = data.load_split("cifar100", tmp_path, "train")
    assert train.y.tolist() == w["train"][1]
    assert torch.equal(train.x.reshape(7, -1), torch.from_numpy(w["train"][0]))
    assert train.info.num_classes == 100 and train.meta["classes"][99] == "f99"
    assert len(data.load_split("cifar100", tmp_path, "test")) == 5


def test_svhn_mat_files(tmp_path):
    w = write_svhn(tmp_path)
    train = data.load_split("svhn", tmp_path, "train")
    X, y = w["train"]
    assert train.x.shape == (6, 3, 32, 32) and train.x.dtype == torch.uint8
    assert train.y.tolist() == [0, 1, 2, 9, 0, 5]  # label 10 is digit 0
    # NCHW from HWCN: pixel (row 5, col 7, channel 2) of example 3
    assert int(train.x[3, 2, 5, 7]) == int(X[5, 7, 2, 3])
    assert len(data.load_split("svhn", tmp_path, "test")) == 4


def test_train_subset_keeps_first_examples_and_leaves_test_whole(tmp_path):
    write_cifar10(tmp_path)
    full = data.load_split("cifar10", tmp_path, "train")
    sub = data.load_split("cifar10", tmp_path, "train", train_subset=7)
    assert len(sub) == 7 and torch.equal(sub.x, full.x[:7]) and torch.equal(sub.y, full.y[:7])
    assert len(data.load_split("cifar10", tmp_path, "test", train_subset=2)) == 6
    with pytest.raises(UserError, match="--train-subset"):
        data.load_split("cifar10", tmp_path, "train", train_subset=0)


@pytest.mark.parametrize("name, missing", [
    ("cifar10", "cifar-10-batches-py/data_batch_1"),
    ("cifar100", "cifar-100-python/train"),
    ("svhn", "train_32x32.mat"),
])
def test_missing_dataset_names_path_and_command(tmp_path, name, missing):
    with pytest.raises(UserError) as err:
        data.load_split(name, tmp_path, "train")
    msg = str(err.value)
    assert "\n" not in msg
    assert str(tmp_path / missing) in msg
    assert f"python -m sparsebasin download --dataset {name} --data-dir {tmp_path}" in msg


def test_missing_imagenet_says_where_to_put_the_tree(tmp_path):
    with pytest.raises(UserError) as err:
        data.load_split("imagenet", tmp_path, "test")
    msg = str(err.value)
    assert str(tmp_path / "imagenet" / "val") in msg and "ImageFolder" in msg and "\n" not in msg


def test_corrupt_cifar_file_is_a_user_error(tmp_path):
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"\x80\x04truncated")
    with pytest.raises(UserError, match=r"data_batch_3 is not a valid cifar10 file.*delete it and rerun"):
        data.load_split("cifar10", tmp_path, "train")
    with open(tmp_path / "cifar-10-batches-py" / "data_batch_3", "wb") as fh:
        pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, fh)
    with pytest.raises(UserError, match="expected N x 3072"):
        data.load_split("cifar10", tmp_path, "train")


def test_batches_normalise_uint8_images(tmp_path):
    write_cifar10(tmp_path)
    ds = data.load_split("cifar10", tmp_path, "train")
    xs, ys = zip(*data.batches(ds, 8, shuffle=False))
    assert [len(y) for y in ys] == [8, 8, 4]
    x = torch.cat(xs)
    info = ds.info
    want = (ds.x.float() / 255 - torch.tensor(info.mean).view(1, 3, 1, 1)) / torch.tensor(info.std).view(1, 3, 1, 1)
    assert x.dtype == torch.float32 and torch.allclose(x, want, atol=1e-6)
    assert torch.equal(torch.cat(ys), ds.y)
    assert data.num_batches(20, 8) == 3 and data.num_batches(20, 8, drop_last=True) == 2
    assert len(list(data.batches(ds, 8, shuffle=True, drop_last=True))) == 2
    with pytest.raises(UserError, match="batch size"):
        data.batches(ds, 0, shuffle=False)
