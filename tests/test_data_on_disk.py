"""Data already on disk is accepted without the network, by the step and by the workflow's download rule.

torchvision's own check compares md5 sums, so any copy it does not recognise (here: small files in the real
on-disk formats) would be fetched again. Every test here makes the network unusable (torchvision's dataset
classes raise; the workflow's subprocess gets a proxy that refuses connections), so a pass means nothing was
downloaded.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sparsebasin import cli
from sparsebasin.errors import UserError
from sparsebasin.steps import download

from datafiles import write_cifar10, write_cifar100, write_imagefolder, write_svhn

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def no_network(monkeypatch):
    """Any torchvision download attempt fails the test."""
    import torchvision.datasets

    def refuse(*args, **kwargs):
        raise AssertionError("went to the network")

    for name in ("CIFAR10", "CIFAR100", "SVHN"):
        monkeypatch.setattr(torchvision.datasets, name, refuse)


@pytest.mark.parametrize("name, write, summary", [
    ("cifar10", write_cifar10, "cifar10: 20 train / 6 test examples"),
    ("cifar100", write_cifar100, "cifar100: 7 train / 5 test examples"),
    ("svhn", write_svhn, "svhn: 6 train / 4 test examples"),
])
def test_a_copy_on_disk_is_checked_and_kept(tmp_path, capsys, no_network, name, write, summary):
    write(tmp_path)
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    assert cli.main(["download", "--dataset", name, "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert summary in out and "already in place: nothing downloaded" in out, out
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()} == before


def test_imagenet_in_place_is_accepted(tmp_path, capsys):
    write_imagefolder(tmp_path)
    assert cli.main(["download", "--dataset", "imagenet", "--data-dir", str(tmp_path)]) == 0
    assert "imagenet: 2 classes" in capsys.readouterr().out


def test_a_broken_copy_offline_names_the_file(tmp_path, capsys, no_network):
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    assert cli.main(["download", "--dataset", "cifar10", "--data-dir", str(tmp_path), "--offline"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "data_batch_3 is missing" in err, err


def test_a_broken_copy_goes_to_the_network_without_offline(tmp_path, monkeypatch):
    import urllib.error

    import torchvision.datasets

    calls = []

    def offline(*args, **kwargs):
        calls.append(kwargs)
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(b"truncated")
    with pytest.raises(UserError, match="downloading cifar10 .* failed"):
        download.fetch("cifar10", str(tmp_path))
    assert calls


@pytest.mark.slow
def test_the_workflow_takes_data_on_disk_without_the_network(tmp_path):
    """`snakemake <data stamp>`: the download rule checks the copy in data/ and writes the documented stamp."""
    write_cifar10(tmp_path / "data")
    env = dict(os.environ, OMP_NUM_THREADS="1", PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "all_proxy"):
        env[var] = "http://127.0.0.1:9"  # the discard port: any download attempt fails at once
    env.pop("no_proxy", None), env.pop("NO_PROXY", None)
    stamp = "data/.sparsebasin/cifar10.prepared.json"
    res = subprocess.run([str(Path(sys.executable).parent / "snakemake"), "-s", str(REPO / "Snakefile"), "--directory",
                          str(tmp_path), "--cores", "1", stamp], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    assert (tmp_path / "data/.sparsebasin/cifar10.downloaded").is_file()
    log = (tmp_path / "results/logs/data/download_cifar10.log").read_text(encoding="utf-8")
    assert "already in place: nothing downloaded" in log, log
    assert (tmp_path / stamp).is_file()


def test_the_docs_describe_data_on_disk():
    """README names the stamp and the check; the layouts it documents are the ones the loaders read."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for text in (".sparsebasin/<dataset>.downloaded", "cifar-10-batches-py/", "cifar-100-python/", "train_32x32.mat",
                 "imagenet/train/", "--offline"):
        assert text in readme, text
