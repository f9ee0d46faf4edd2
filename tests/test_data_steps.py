"""The ``prepare`` and ``download`` steps through the CLI entry point (no network)."""

from __future__ import annotations

import json
import pickle
import urllib.error
from pathlib import Path

import pytest

from sparsebasin import cli
from sparsebasin.data import mnist1d
from sparsebasin.errors import UserError
from sparsebasin.steps import download

from datafiles import write_cifar10, write_svhn


def test_prepare_mnist1d_generates_then_verifies(tmp_path, capsys):
    argv = ["prepare", "--dataset", "mnist1d", "--data-dir", str(tmp_path),
            "--n-train", "30", "--n-test", "20", "--seed", "4", "--stamp", str(tmp_path / "stamp.json")]
    assert cli.main(argv) == 0
    path = Path(capsys.readouterr().out.strip())
    assert path == tmp_path / "mnist1d" / "mnist1d_train30_test20_seed4.pt" and path.exists()
    stamp = json.loads((tmp_path / "stamp.json").read_text())
    assert stamp["path"] == str(path) and len(stamp["sha256"]) == 64
    assert cli.main(argv) == 0  # second run verifies the existing cache
    path.write_bytes(path.read_bytes()[:-10])
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "delete it and rerun" in err and str(path) in err


def test_prepare_checks_other_datasets(tmp_path, capsys):
    assert cli.main(["prepare", "--dataset", "cifar10", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cifar10 not found") and err.count("\n") == 1
    assert f"python -m sparsebasin download --dataset cifar10 --data-dir {tmp_path}" in err
    write_cifar10(tmp_path)
    assert cli.main(["prepare", "--dataset", "cifar10", "--data-dir", str(tmp_path)]) == 0
    assert "cifar10: 20 train / 6 test examples" in capsys.readouterr().out
    assert cli.main(["prepare", "--dataset", "cifar10", "--data-dir", str(tmp_path), "--seed", "1"]) == 2
    assert "--seed" in capsys.readouterr().err


def test_download_imagenet_explains_manual_placement(tmp_path, capsys):
    assert cli.main(["download", "--dataset", "imagenet", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "cannot be downloaded" in err and f"{tmp_path}/imagenet/train/<class>" in err


class _FakeSVHN:
    """Stands in for torchvision.datasets.SVHN: 'downloads' by writing small real-format files."""

    calls: list = []

    def __init__(self, root, split, download):
        type(self).calls.append((root, split, download))
        if not (Path(root) / "train_32x32.mat").exists():
            write_svhn(Path(root))


def test_download_uses_torchvision_then_checks(tmp_path, monkeypatch, capsys):
    import torchvision.datasets

    _FakeSVHN.calls = []
    monkeypatch.setattr(torchvision.datasets, "SVHN", _FakeSVHN)
    assert cli.main(["download", "--dataset", "svhn", "--data-dir", str(tmp_path)]) == 0
    assert _FakeSVHN.calls == [(str(tmp_path), "train", True), (str(tmp_path), "test", True)]
    assert "svhn: 6 train / 4 test examples" in capsys.readouterr().out


def test_download_network_failure_is_one_line(tmp_path, monkeypatch):
    import torchvision.datasets

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(torchvision.datasets, "CIFAR100", offline)
    with pytest.raises(UserError, match="downloading cifar100 .* failed .*login node"):
        download.fetch("cifar100", str(tmp_path))


def test_download_mnist1d_generates_offline(tmp_path, monkeypatch):
    small = mnist1d.generate(mnist1d.MNIST1DConfig(20, 10))
    monkeypatch.setattr(mnist1d, "generate", lambda config: small)
    assert "nothing downloaded" in download.fetch("mnist1d", str(tmp_path))
    assert mnist1d.cache_path(tmp_path).exists()
