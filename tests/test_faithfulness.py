"""The faithfulness audit's items (issue: faithful at paper scale), each with a test that failed before.

Sampling (B1, B2): every subset of a training split is a seeded random sample of the whole split,
recorded with the classes it covers; the ResNet20 res3 matching point switch; REPAIR at block
outputs; the precision switch; the step schedule; the paper configs' choices.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from datafiles import write_imagefolder

from sparsebasin import checkpoints, cli, data
from sparsebasin import device as devices
from sparsebasin.models import build_model
from sparsebasin.symmetry.spec import permutation_spec

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def imagenet_tree(tmp_path_factory):
    return write_imagefolder(tmp_path_factory.mktemp("inet"), classes=12, per_class=10, splits=("train", "val"))


def test_a_sample_of_a_class_ordered_split_covers_most_classes(imagenet_tree):
    ds = data.load_split("imagenet", imagenet_tree, "train")
    labels = [c for _, c in ds.samples]
    assert labels == sorted(labels)  # ImageFolder lists images class by class
    first = {c for _, c in ds.samples[:30]}
    assert len(first) == 3  # what "the first batches" would see: 3 of 12 classes
    sample, info = data.sample_split(ds, 30, seed=0)
    assert info["classes"] >= 0.8 * 12 and info == {"seed": 0, "examples": 30, "of": 120, "classes": info["classes"]}
    again, _ = data.sample_split(ds, 30, seed=0)
    assert [p for p, _ in sample.samples] == [p for p, _ in again.samples]  # deterministic given the seed
    other, _ = data.sample_split(ds, 30, seed=1)
    assert [p for p, _ in other.samples] != [p for p, _ in sample.samples]


def _imagenet_checkpoints(tmp, tree):
    meta = checkpoints.data_meta(data.load_split("imagenet", tree, "train").info)
    paths = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = build_model({"name": "resnet20", "width": 1}, meta["num_classes"], 3)
        p = tmp / f"m{seed}.pt"
        checkpoints.save_checkpoint(p, model, {"name": "resnet20", "width": 1}, meta, 10)
        paths.append(p)
    return paths


@pytest.mark.slow
def test_match_and_interpolate_record_their_sample(imagenet_tree, tmp_path, monkeypatch):
    monkeypatch.setenv("SPARSEBASIN_WORKERS", "0")
    a, b = _imagenet_checkpoints(tmp_path, imagenet_tree)
    common = ["--dataset", "imagenet", "--data-dir", str(imagenet_tree), "--device", "cpu", "--threads", "1"]
    assert cli.main(["match", "--a", str(a), "--b", str(b), *common, "--batches", "3", "--batch-size", "10",
                     "--sample-seed", "4", "--out", str(tmp_path / "p.pt"), "--summary", str(tmp_path / "p.json")]) == 0
    summary = json.loads((tmp_path / "p.json").read_text())
    assert summary["sample"]["seed"] == 4 and summary["sample"]["examples"] == 30
    assert summary["sample"]["classes"] >= 10 and summary["examples"] == 30
    assert cli.main(["interpolate", "--a", str(a), "--b", str(b), "--permutation", str(tmp_path / "p.pt"), *common,
                     "--alphas", "2", "--modes", "bn_reset", "--batch-size", "10", "--reset-batches", "3",
                     "--eval-batches", "2", "--out", str(tmp_path / "c.csv"), "--barriers", str(tmp_path / "b.json")]) == 0
    samples = json.loads((tmp_path / "b.json").read_text())["samples"]
    assert samples["statistics"]["examples"] == 30 and samples["statistics"]["classes"] >= 10
    assert samples["eval_train"]["examples"] == 20 and samples["eval_test"]["classes"] >= 8


def test_authors_code_stream_points_match_res3_at_layer3_1():
    model = build_model({"name": "resnet20", "width": 1}, 10, 3)
    default = permutation_spec(model)
    authors = permutation_spec(model, stream_points="authors_code")
    assert default.match_points["res3"] == ("layer3", False)
    assert authors.match_points["res3"] == ("layer3.1", False)
    assert {g: p for g, p in authors.match_points.items() if g != "res3"} == \
        {g: p for g, p in default.match_points.items() if g != "res3"}
    assert authors.axes == default.axes  # only where units are read moves, never what a group permutes
    with pytest.raises(Exception, match="not defined for vgg11"):
        permutation_spec(build_model({"name": "vgg11", "width": 1}, 10, 3), stream_points="authors_code")


def test_config_refuses_stream_points_the_architecture_does_not_define():
    from workflow_plan import plan_of

    from sparsebasin.plan.config import ConfigError

    config = yaml.safe_load(open(Path(__file__).resolve().parents[1] / "config.yaml"))
    config["experiments"]["mnist1d"]["cells"][0]["match"]["stream_points"] = "authors_code"
    with pytest.raises(ConfigError, match=r"cells\[0\]\.match\.stream_points = 'authors_code': mlp defines stage_output only"):
        plan_of(config)


def test_repair_block_corrects_at_block_outputs_after_a_bn_reset():
    from sparsebasin.symmetry import lmc

    torch.manual_seed(0)
    model = build_model({"name": "resnet20", "width": 1}, 10, 3).eval()
    blocks = lmc.block_points(model)
    assert blocks == [f"layer{s}.{b}" for s in (1, 2, 3) for b in (0, 1, 2)]
    x = torch.rand(64, 3, 32, 32)
    ds = data.ArrayDataset(data.dataset_info("cifar10"), (x * 255).to(torch.uint8), torch.arange(64) % 10)
    cfg = lmc.EvalConfig(batch_size=16, reset_batches=4)
    spec = permutation_spec(model)
    sd_a = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(1)
    sd_b = build_model({"name": "resnet20", "width": 1}, 10, 3).state_dict()
    rows = lmc.interpolate_path(model, spec, sd_a, sd_b, [0.0, 0.5, 1.0], ["repair", "repair_block"], ds,
                                {"test": ds}, cfg, permuted=False)
    got = {(r["alpha"], r["mode"]) for r in rows}
    assert got == {(a, m) for a in (0.0, 0.5, 1.0) for m in ("repair", "repair_block")}
    assert cfg.samples["statistics"]["examples"] == 64
    # at the endpoints, the block-output corrections leave each block's output at its target statistics
    model.load_state_dict(sd_a)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    targets = lmc.channel_stats(model, blocks, ds, cfg, train_mode=True)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # running stats left as they were
    assert set(targets) == set(blocks)
    assert "repair_block" in lmc.MODE_DESCRIPTIONS and "repair_block" in lmc.MODES


def test_precision_switch_reaches_the_trainer_and_evaluation_is_fp32(tmp_path, monkeypatch):
    from sparsebasin.training import fit, resolve_config

    calls = []
    real = devices.autocast
    monkeypatch.setattr(devices, "autocast", lambda dev, precision="bf16": calls.append(precision) or real(dev, precision))
    ds = data.ArrayDataset(data.dataset_info("mnist1d"), torch.randn(64, 40), torch.arange(64) % 10)
    model = build_model({"name": "mlp", "width": 1, "hidden": 8}, 10, 1, input_size=40)
    meta = {"name": "mnist1d", "num_classes": 10, "in_channels": 1, "input_size": 40}
    for precision in ("bf16", "fp32"):
        calls.clear()
        cfg = resolve_config("mnist1d_dense", epochs=2, batch_size=16, precision=precision)
        res = fit(model, ds, ds, cfg, out_dir=tmp_path / precision, model_cfg={"name": "mlp", "hidden": 8},
                  data_meta=meta, run_name=precision, device="cpu", progress="log")
        assert calls == [precision] * 8  # 2 epochs x 4 training steps; evaluation never autocasts
        assert res["request"]["train"]["precision"] == precision
        assert res["provenance"]["config"]["train"]["precision"] == "fp32"  # bf16 autocast is CUDA-only
        assert res["provenance"]["config"]["train"]["precision_requested"] == res["precision_requested"] == precision
        assert res["precision"] == "fp32"


def test_step_schedule_decays_after_the_warmup():
    from sparsebasin.training import resolve_config
    from sparsebasin.training.schedule import make_schedule

    cfg = resolve_config("imagenet_dense", schedule="step", step_every=31, step_gamma=0.1)
    sched = make_schedule(cfg, torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0), steps_per_epoch=10)
    lr = {e: sched.lr_at(e * 10) for e in (4, 5, 35, 36, 66, 67)}
    assert lr[4] == pytest.approx(0.4 * 41 / 50) and lr[5] == lr[35] == pytest.approx(0.4)
    assert lr[36] == pytest.approx(0.04) and lr[66] == pytest.approx(0.04) and lr[67] == pytest.approx(0.004)


def test_paper_configs_state_their_choices():
    cifar10 = yaml.safe_load((REPO / "config" / "cifar10_resnet20.yaml").read_text())
    cifar100 = yaml.safe_load((REPO / "config" / "cifar100_resnet20.yaml").read_text())
    for cfg, name in ((cifar10, "cifar10_resnet20"), (cifar100, "cifar100_resnet20")):
        assert cfg["experiments"][name]["sparsity_figure_ks"] == [10, 25, 50, 100]  # Figs 9, 10
        assert cfg["precision"] == "fp32"
    inet = yaml.safe_load((REPO / "config" / "imagenet_resnet50.yaml").read_text())
    dense = inet["experiments"]["imagenet_resnet50"]["cells"][0]["dense"]
    assert (dense["schedule"], dense["step_every"], dense["step_gamma"]) == ("step", 31, 0.1)
    text = (REPO / "config" / "imagenet_resnet50.yaml").read_text()
    assert "31 epochs" in text and "Table 10" in text


def test_docs_number_the_tables_as_the_paper_does():
    docs = "\n".join((REPO / p).read_text() for p in ("docs/workflow.md", "config/cifar100_resnet20.yaml",
                                                     "config/cifar10_vgg11.yaml"))
    assert "Tables 9-12" not in docs and "Tables 13-14" not in docs
    assert "Tables 11-14" in docs and "Table 9" in docs and "Table 10" in docs
