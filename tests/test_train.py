"""The trainer: presets, schedule, run directory, determinism, divergence, train_run and the CLI."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch

from sparsebasin import checkpoints, cli, io
from sparsebasin.data.base import ArrayDataset, DatasetInfo
from sparsebasin.errors import TrainingDiverged, UserError
from sparsebasin.models import build_model
from sparsebasin.options import DataOptions, RunOptions
from sparsebasin.training import PRESETS, CosineSchedule, TrainConfig, fit, resolve_config, train_run
from sparsebasin.training.loop import METRICS_COLUMNS

INFO = DatasetInfo(name="synthetic", num_classes=4, in_channels=1, input_shape=(12,), mean=(0.0,), std=(1.0,),
                   augment=False, flip=False)
META = {"name": "synthetic", "num_classes": 4, "in_channels": 1, "input_size": 12}
MLP_CFG = {"name": "mlp", "width": 1, "depth": 2, "hidden": 16}
SMALL = TrainConfig(epochs=3, lr=0.05, momentum=0.9, weight_decay=5e-4, batch_size=32)


def synthetic(n: int, seed: int) -> ArrayDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 12, generator=g)
    return ArrayDataset(INFO, x, x[:, :4].argmax(1).long())


def mlp(seed: int):
    torch.manual_seed(seed)
    return build_model(MLP_CFG, 4, 1, input_size=12)


def run_fit(out, *, seed=0, data_seed=0, cfg=SMALL, train=None, **kw):
    kw.setdefault("progress", "log")
    return fit(mlp(seed), train if train is not None else synthetic(200, 0), synthetic(50, 1), cfg, out_dir=out,
               data_seed=data_seed, model_cfg=MLP_CFG, data_meta=META, run_name=kw.pop("run_name", "test-run"),
               init_seed=seed, **kw)


def final_sd(out):
    return checkpoints.load_checkpoint(out / "final.pt")["state_dict"]


def same_weights(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ----------------------------------------------------------------- config --

def test_presets_hold_the_paper_settings():
    d = PRESETS["dense"]
    assert (d.lr, d.momentum, d.weight_decay, d.batch_size, d.epochs, d.warmup_epochs) == (0.08, 0.9, 5e-4, 128, 200, 0)
    s = PRESETS["sparse"]
    assert (s.lr, s.momentum, s.weight_decay, s.batch_size, s.epochs) == (0.02, 0.9, 5e-4, 128, 200)
    f = PRESETS["imp_ft"]
    assert (f.lr, f.momentum, f.weight_decay, f.epochs) == (0.01, 0.0, 0.0, 50)
    for name in ("imagenet_dense", "imagenet_sparse"):
        c = PRESETS[name]
        assert (c.lr, c.weight_decay, c.batch_size, c.epochs, c.warmup_epochs) == (0.4, 1e-4, 1024, 80, 5)
    assert (PRESETS["imagenet_imp_ft"].epochs, PRESETS["imagenet_imp_ft"].lr) == (20, 0.04)
    for name in ("mnist1d_dense", "mnist1d_sparse", "mnist1d_imp_ft"):
        assert PRESETS[name].validate() is PRESETS[name]
    assert all(cfg.preset == name for name, cfg in PRESETS.items())


def test_resolve_config_none_means_preset():
    cfg = resolve_config("sparse", epochs=190, lr=None, batch_size=None)
    assert (cfg.epochs, cfg.lr, cfg.batch_size, cfg.preset) == (190, 0.02, 128, "sparse")
    assert resolve_config("dense", lr=0.1, warmup_epochs=2.5).warmup_epochs == 2.5
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("kwargs, word", [
    ({"epochs": 0}, "epochs"), ({"lr": -1.0}, "lr"), ({"momentum": 1.0}, "momentum"),
    ({"batch_size": 0}, "batch_size"), ({"warmup_epochs": 300.0}, "warmup_epochs"), ({"augment": "maybe"}, "augment"),
])
def test_resolve_config_rejects_bad_values(kwargs, word):
    with pytest.raises(UserError, match=word):
        resolve_config("dense", **kwargs)


def test_unknown_preset_lists_choices():
    with pytest.raises(UserError, match="mnist1d_dense"):
        resolve_config("fast")


def test_schedule_warmup_then_cosine_to_zero():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    s = CosineSchedule(opt, 0.4, total_steps=100, warmup_steps=10)
    lrs = [s.lr_at(i) for i in range(101)]
    assert lrs[0] == pytest.approx(0.04) and lrs[9] == pytest.approx(0.4) and lrs[10] == pytest.approx(0.4)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert lrs[55] == pytest.approx(0.2) and lrs[100] == pytest.approx(0.0, abs=1e-12) and lrs[99] > 0
    assert s.apply() == opt.param_groups[0]["lr"] == pytest.approx(0.04)
    s.step()
    s2 = CosineSchedule(opt, 0.4, 100, 10)
    s2.load_state_dict(s.state_dict())
    assert s2.lr == s.lr


# -------------------------------------------------------------------- fit --

def test_fit_writes_the_run_directory(tmp_path):
    model = mlp(0)
    init = {k: v.clone() for k, v in model.state_dict().items()}
    res = fit(model, synthetic(200, 0), synthetic(50, 1), SMALL, out_dir=tmp_path, save_epochs=[0, 1, 3],
              model_cfg=MLP_CFG, data_meta=META, run_name="run-x", tags={"branch": "dense"}, init_seed=0,
              progress="log", provenance_config={"note": "test"})
    for name in ("final.pt", "metrics.csv", "predictions.pt", "result.json", "ckpt/epoch0.pt", "ckpt/epoch1.pt",
                 "ckpt/epoch3.pt"):
        assert (tmp_path / name).exists(), name
    assert not (tmp_path / ".resume.pt").exists()
    assert not (tmp_path / "ckpt" / "epoch2.pt").exists()
    # epoch 0 is the init before any step; epoch k counts completed epochs.
    e0 = checkpoints.load_checkpoint(tmp_path / "ckpt" / "epoch0.pt")
    assert e0["epoch"] == 0 and same_weights(e0["state_dict"], init)
    e1 = checkpoints.load_checkpoint(tmp_path / "ckpt" / "epoch1.pt")
    assert e1["epoch"] == 1 and not same_weights(e1["state_dict"], init)
    final = checkpoints.load_checkpoint(tmp_path / "final.pt")
    assert final["epoch"] == 3 and final["model"]["name"] == "mlp" and final["data"] == META
    assert same_weights(final["state_dict"], checkpoints.load_checkpoint(tmp_path / "ckpt" / "epoch3.pt")["state_dict"])

    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    assert tuple(rows[0]) == METRICS_COLUMNS and [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert float(rows[0]["lr"]) == pytest.approx(0.05) and float(rows[2]["lr"]) < float(rows[1]["lr"])
    assert all(0 <= float(r["test_acc"]) <= 1 and float(r["images_per_s"]) > 0 for r in rows)

    result = json.loads((tmp_path / "result.json").read_text())
    assert result == res | {"provenance": result["provenance"]}
    assert result["run"] == "run-x" and result["tags"] == {"branch": "dense"} and result["epochs"] == 3
    assert result["density"] is None
    assert result["test_acc"] == pytest.approx(float(rows[-1]["test_acc"]))
    assert result["train_loss"] == pytest.approx(float(rows[-1]["train_loss"]))
    prov = result["provenance"]
    assert prov["seeds"] == {"init": 0, "data": 0} and prov["config"]["train"]["lr"] == 0.05
    assert prov["config"]["note"] == "test" and prov["device"] == "cpu" and prov["torch_version"] == torch.__version__
    assert "git_commit" in prov and "sparsebasin_version" in prov

    pred = io.load_artifact(tmp_path / "predictions.pt", "predictions")
    assert pred["logits"].dtype == torch.float32 and pred["logits"].shape == (50, 4)
    assert pred["labels"].dtype == torch.int64 and torch.equal(pred["labels"], synthetic(50, 1).y)
    acc = (pred["logits"].argmax(1) == pred["labels"]).float().mean().item()
    assert acc == pytest.approx(result["test_acc"])


def test_same_seeds_give_bit_identical_weights_and_seeds_are_separate(tmp_path):
    run_fit(tmp_path / "a", seed=0, data_seed=0, write_predictions=False)
    run_fit(tmp_path / "b", seed=0, data_seed=0, write_predictions=False)
    run_fit(tmp_path / "c", seed=0, data_seed=1, write_predictions=False)
    run_fit(tmp_path / "d", seed=1, data_seed=0, write_predictions=False)
    a, b, c, d = (final_sd(tmp_path / x) for x in "abcd")
    assert same_weights(a, b)
    assert not same_weights(a, c)  # data order changed, init did not
    assert same_weights(checkpoints.load_checkpoint(tmp_path / "a" / "final.pt")["state_dict"], a)
    assert not same_weights(a, d)


def test_nan_loss_stops_with_one_line_and_no_final_output(tmp_path):
    train = synthetic(200, 0)
    train.x[150, 3] = float("nan")  # reached in the first epoch
    with pytest.raises(TrainingDiverged) as info:
        run_fit(tmp_path, train=train, run_name="dense/A", save_epochs=[0])
    msg = str(info.value)
    assert "\n" not in msg and "dense/A" in msg and "epoch 1" in msg
    for name in ("final.pt", "result.json", "metrics.csv", "predictions.pt"):
        assert not (tmp_path / name).exists()


def test_save_epochs_out_of_range(tmp_path):
    with pytest.raises(UserError, match="save-epochs"):
        run_fit(tmp_path, save_epochs=[0, 4])


def test_warmup_and_trailing_single_example_batch(tmp_path):
    """201 examples, batch 25: a last batch of one is dropped (BatchNorm-safe); warm-up ramps the first epoch."""
    cfg = TrainConfig(epochs=2, lr=0.1, batch_size=25, warmup_epochs=1)
    run_fit(tmp_path, cfg=cfg, train=synthetic(201, 0), write_predictions=False)
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    assert float(rows[0]["lr"]) == pytest.approx(0.1 / 8)  # 8 steps per epoch, first warm-up step
    assert float(rows[1]["lr"]) == pytest.approx(0.1)


# ------------------------------------------------------ train_run and CLI --

def write_fake_cifar10(root, n_per_batch: int = 60, n_test: int = 50) -> None:
    """Tiny CIFAR-10 in torchvision's pickle layout (random pixels), read by the real loader."""
    import pickle

    import numpy as np

    rng = np.random.default_rng(0)
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True)
    for name, n in [(f"data_batch_{i}", n_per_batch) for i in range(1, 6)] + [("test_batch", n_test)]:
        with open(base / name, "wb") as fh:
            pickle.dump({"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                         "labels": rng.integers(0, 10, n).tolist()}, fh)


@pytest.fixture(scope="module")
def cifar_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_fake_cifar10(root)
    return root


def test_train_run_from_checkpoint_with_mask_and_mismatches(cifar_dir, tmp_path):
    cfg = TrainConfig(epochs=1, lr=0.05, batch_size=64)
    common = dict(data=DataOptions("cifar10", cifar_dir, train_subset=256), cfg=cfg, seed=3, data_seed=4,
                  run=RunOptions(progress="log"))
    dense = train_run(model_cfg={"name": "mlp", "width": 1}, out_dir=tmp_path / "dense", save_epochs=[0], **common)
    assert dense["provenance"]["seeds"] == {"init": 3, "data": 4}
    assert dense["provenance"]["config"]["n_train"] == 256
    assert dense["provenance"]["config"]["augment"] is True
    init = tmp_path / "dense" / "ckpt" / "epoch0.pt"
    final = checkpoints.load_checkpoint(tmp_path / "dense" / "final.pt")
    model = checkpoints.model_from_checkpoint(final)
    mask = {k: v.abs() > v.abs().median() for k, v in model.state_dict().items() if k.endswith("weight")}
    checkpoints.save_mask(tmp_path / "mask.pt", mask, final["model"], final["data"])

    sparse = train_run(model_cfg=None, out_dir=tmp_path / "sparse", init_checkpoint=init, mask_path=tmp_path / "mask.pt",
                       **{**common, "run": RunOptions(progress="log", tags={"branch": "lth"})})
    assert sparse["density"] == pytest.approx(checkpoints.mask_density(mask))
    assert sparse["provenance"]["seeds"]["init"] is None
    sd = checkpoints.load_checkpoint(tmp_path / "sparse" / "final.pt")["state_dict"]
    assert all(torch.all(sd[k][~m] == 0) for k, m in mask.items())

    with pytest.raises(UserError, match="width"):
        train_run(model_cfg={"name": "mlp", "width": 2}, out_dir=tmp_path / "bad", init_checkpoint=init, **common)
    with pytest.raises(UserError, match="mask"):
        train_run(model_cfg={"name": "mlp", "width": 2}, out_dir=tmp_path / "bad", mask_path=tmp_path / "mask.pt",
                  **common)
    other = dict(final["data"], name="svhn")
    checkpoints.save_mask(tmp_path / "mask_svhn.pt", mask, final["model"], other)
    with pytest.raises(UserError, match="same dataset"):
        train_run(model_cfg=None, out_dir=tmp_path / "bad", init_checkpoint=init, mask_path=tmp_path / "mask_svhn.pt",
                  **common)


def test_cli_train(cifar_dir, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "--dataset", "cifar10", "--data-dir", str(cifar_dir), "--train-subset", "300",
            "--model", "mlp", "--hidden", "32", "--preset", "dense", "--epochs", "2", "--lr", "0.03",
            "--seed", "5", "--save-epochs", "0,2", "--out-dir", str(out), "--tag", "branch=dense", "--tag", "seed=5",
            "--progress", "log", "--threads", "1"]
    assert cli.main(argv) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["tags"] == {"branch": "dense", "seed": "5"}
    cfg = result["provenance"]["config"]["train"]
    assert (cfg["preset"], cfg["epochs"], cfg["lr"], cfg["batch_size"]) == ("dense", 2, 0.03, 128)
    assert result["provenance"]["seeds"] == {"init": 5, "data": 5}
    assert checkpoints.load_checkpoint(out / "final.pt")["model"]["hidden"] == 32
    assert (out / "ckpt" / "epoch0.pt").exists() and (out / "ckpt" / "epoch2.pt").exists()
    err = capsys.readouterr().err
    assert "epoch 2/2" in err
    assert cli.main(argv[:-4] + ["--save-epochs", "0,9"]) == 2
    assert "save-epochs" in capsys.readouterr().err
