"""The dataset on disk is the dataset (issue 25, item 7).

Class counts and input shapes come from the data each step reads, never
from the dataset card: an ImageNet tree of a few class folders is a
few-class dataset in train, prune, sparse, match, interpolate and plane
alike, and a checkpoint that does not fit the data read is one line naming
the file, both counts and the data directory. (tests/test_imagenet_e2e.py
runs the whole ImageNet config on such a tree.)
"""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from sparsebasin import checkpoints, cli, data
from sparsebasin.errors import UserError
from sparsebasin.models import build_model, prunable_keys

MLP = {"name": "mlp", "width": 1, "hidden": 4, "depth": 1}


def make_tree(root: Path, classes: list[str], per_class: int = 2, val_classes: list[str] | None = None) -> Path:
    """A tiny ImageFolder tree: ``per_class`` small JPEGs per class in train and val."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, names in (("train", classes), ("val", val_classes or classes)):
        for c, cls in enumerate(names):
            d = root / "imagenet" / split / cls
            d.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                arr = np.clip(rng.normal(40 * c, 30, (24, 24, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(arr).save(d / f"img{i}.JPEG")
    return root


def run(argv, capsys) -> tuple[int, str]:
    capsys.readouterr()
    code = cli.main([str(a) for a in argv])
    return code, capsys.readouterr().err


def error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture
def imagenet(tmp_path, monkeypatch):
    """A 3-class tree, an MLP checkpoint trained (well, saved) on it, and a mask for it."""
    monkeypatch.setenv("SPARSEBASIN_WORKERS", "0")
    root = make_tree(tmp_path / "data", ["n01", "n02", "n03"])
    train = data.load_split("imagenet", root, "train")
    meta = checkpoints.data_meta(train.info)
    assert meta["num_classes"] == 3  # from the tree, not the card's 1000
    paths = {}
    for seed in (0, 1, 2):
        torch.manual_seed(seed)
        model = build_model(MLP, meta["num_classes"], meta["in_channels"], input_size=meta["input_size"])
        paths[seed] = tmp_path / f"m{seed}.pt"
        checkpoints.save_checkpoint(paths[seed], model, MLP, meta, epoch=1)
    mask = {k: torch.rand(p.shape, generator=torch.Generator().manual_seed(0)) < 0.5
            for k, p in model.named_parameters() if k in prunable_keys(model)}
    checkpoints.save_mask(tmp_path / "mask.pt", mask, MLP, meta, {"requested": 0.5})
    return tmp_path, root, paths


def data_args(root):
    return ["--dataset", "imagenet", "--data-dir", root, "--device", "cpu"]


def test_prune_takes_the_class_count_of_the_tree(imagenet, capsys):
    """A checkpoint trained on a 3-class ImageNet tree is pruned on that tree (main refused: card says 1000)."""
    tmp, root, paths = imagenet
    code, err = run(["prune", "--checkpoint", paths[0], "--targets", "0.5", "--rate", "0.5", "--ft-epochs", "1",
                     "--ft-batch-size", "6", *data_args(root), "--out-dir", tmp / "prune"], capsys)
    assert code == 0, err
    result = json.loads((tmp / "prune" / "S0.5" / "result.json").read_text(encoding="utf-8"))
    assert 0.0 <= result["test_acc"] <= 1.0
    assert checkpoints.load_checkpoint(tmp / "prune" / "S0.5" / "model.pt")["data"]["num_classes"] == 3


def _steps(tmp, root, paths):
    out = tmp / "out"
    return {
        "prune": ["prune", "--checkpoint", paths[0], "--targets", "0.5", "--rate", "0.5", "--ft-epochs", "1",
                  *data_args(root), "--out-dir", out / "prune"],
        "train": ["train", "--model", "mlp", "--hidden", "4", "--depth", "1", "--init", paths[0], "--epochs", "1",
                  *data_args(root), "--out-dir", out / "train"],
        "sparse": ["sparse", "--init", paths[0], "--mask", tmp / "mask.pt", "--branch", "lth", "--epochs", "1",
                   *data_args(root), "--out-dir", out / "sparse"],
        "match": ["match", "--a", paths[0], "--b", paths[1], "--batches", "1", "--batch-size", "4",
                  *data_args(root), "--out", out / "perm.pt", "--summary", out / "perm.json"],
        "interpolate": ["interpolate", "--a", paths[0], "--b", paths[1], "--alphas", "2", "--modes", "plain",
                        *data_args(root), "--out", out / "curve.csv", "--barriers", out / "barriers.json"],
        "plane": ["plane", "--origin", paths[0], "--p1", paths[1], "--p2", paths[2], "--grid", "2",
                  "--mode", "plain", *data_args(root), "--out", out / "plane.csv"],
    }


@pytest.mark.parametrize("step", ["prune", "train", "sparse", "match", "interpolate", "plane"])
def test_a_checkpoint_that_does_not_fit_the_tree_is_one_line(imagenet, capsys, step):
    """The tree grew a fourth class after training: every step that reads the data says so, in one line
    naming the checkpoint, both class counts and the data directory; nothing is written."""
    tmp, root, paths = imagenet
    make_tree(root, ["n04"])
    code, err = run(_steps(tmp, root, paths)[step], capsys)
    assert code == 2, err
    line = error_line(err)
    assert str(paths[0]) in line and "3" in line and "4" in line and str(root) in line, line
    assert "--data-dir" in line, line
    assert not (tmp / "out").exists() or not any(p.is_file() for p in (tmp / "out").rglob("*")), err


def test_val_labels_index_the_train_class_folders(tmp_path, monkeypatch):
    """A val tree missing a class folder would shift every later class's label; it is refused instead."""
    monkeypatch.setenv("SPARSEBASIN_WORKERS", "0")
    root = make_tree(tmp_path, ["n01", "n02", "n03"], val_classes=["n01", "n03"])
    assert data.load_split("imagenet", root, "train").info.num_classes == 3
    with pytest.raises(UserError, match="different class folders.*n02"):
        data.load_split("imagenet", root, "test")


# A dataset module whose card says 40 values per example while its files hold 30, and a second one whose
# labels run past its card's classes.
PLUGIN_DATA = '''
import torch
from sparsebasin.data.base import ArrayDataset
from sparsebasin.data.catalog import dataset_info

DATASETS = [{{"name": "{name}", "label": "Odd", "num_classes": 4, "in_channels": 1, "input_shape": [40],
              "mean": [0.0], "std": [1.0], "augment": False, "flip": False, "obtain": "generate",
              "download": None, "scale": 0.01, "n_train": 64, "host_mem_mb": 100}}]


def load(name, root, split):
    g = torch.Generator().manual_seed(0 if split == "train" else 1)
    n = 64 if split == "train" else 32
    y = torch.arange(n) % {labels}
    x = torch.randn(n, 30, generator=g) + y.view(-1, 1).float()
    return ArrayDataset(dataset_info(name), x, y, split, {{"source": f"{{root}}/{name}.pt"}})
'''


def _data_plugin(tmp_path, monkeypatch, name: str, labels: int) -> None:
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(PLUGIN_DATA.format(name=name, labels=labels)),
                                         encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("SPARSEBASIN_PLUGINS", name)
    sys.modules.pop(name, None)


def test_input_shape_comes_from_the_data_read(tmp_path, monkeypatch):
    """The model is built for the 30 values the files hold, not the card's 40 (main: a matmul traceback)."""
    _data_plugin(tmp_path, monkeypatch, "oddshape", labels=4)
    assert data.load_split("oddshape", tmp_path, "train").info.input_shape == (30,)
    from sparsebasin.options import DataOptions, RunOptions
    from sparsebasin.training import TrainConfig, train_run

    train_run(model_cfg={"name": "mlp", "width": 1, "hidden": 4}, data=DataOptions("oddshape", tmp_path),
              cfg=TrainConfig(epochs=1, lr=0.01, batch_size=16), seed=0, data_seed=0, out_dir=tmp_path / "run",
              run=RunOptions(device="cpu", progress="log"))
    assert checkpoints.load_checkpoint(tmp_path / "run" / "final.pt")["data"]["input_size"] == 30


def test_labels_outside_the_classes_are_refused(tmp_path, monkeypatch):
    _data_plugin(tmp_path, monkeypatch, "oddlabels", labels=6)
    with pytest.raises(UserError) as err:
        data.load_split("oddlabels", tmp_path, "train")
    assert "oddlabels.pt" in str(err.value) and "4 classes" in str(err.value) and "\n" not in str(err.value)


def test_ensemble_refuses_predictions_whose_labels_exceed_the_logits(tmp_path, capsys):
    """Members evaluated on data with more classes than their output layer: refused, not scored."""
    from sparsebasin import io

    files = []
    for seed in (0, 1):
        g = torch.Generator().manual_seed(seed)
        path = tmp_path / f"p{seed}.pt"
        io.save_artifact(path, "predictions", {"logits": torch.randn(8, 3, generator=g),
                                               "labels": torch.arange(8) % 4}, {})
        files.append(path)
    code, err = run(["ensemble", "--predictions", *files, "--group", "lth", "--out", tmp_path / "e.json"], capsys)
    assert code == 2 and "3 classes" in error_line(err)
    assert not (tmp_path / "e.json").exists()
