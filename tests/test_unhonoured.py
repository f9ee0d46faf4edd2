"""A setting that cannot be honoured is said (issue 25, item 8).

Each case is one ``warning:`` line in the step's log and the value actually
used in the step's output file: fewer matching batches than asked (perm.json),
a sample smaller than asked (barriers.json's samples), a sparsity whose kept
count rounds to another percentage (sparsity.json, result.json), a training
batch larger than the training split (result.json's provenance).
"""

from __future__ import annotations

import json

import pytest
import torch

from sparsebasin import checkpoints, cli
from sparsebasin.data import dataset_info, mnist1d
from sparsebasin.models import build_model

SMALL = mnist1d.MNIST1DConfig(n_train=300, n_test=100, seed=0)
CFG = {"name": "mlp", "width": 1, "hidden": 8, "depth": 2}


@pytest.fixture
def setup(tmp_path, monkeypatch):
    real = mnist1d.load
    monkeypatch.setattr(mnist1d, "load", lambda name, root, split, config=None: real(name, root, split, SMALL))
    meta = checkpoints.data_meta(dataset_info("mnist1d"))
    paths = {}
    for seed in (1, 2):
        torch.manual_seed(seed)
        paths[seed] = tmp_path / f"m{seed}.pt"
        checkpoints.save_checkpoint(paths[seed], build_model(CFG, 10, 1, input_size=40), CFG, meta, epoch=seed)
    return tmp_path, paths


def run(argv, capsys) -> tuple[int, list[str]]:
    capsys.readouterr()
    code = cli.main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert code == 0, err
    return code, [line for line in err.splitlines() if "warning:" in line]


def data_args(tmp, subset=100):
    return ["--dataset", "mnist1d", "--data-dir", tmp / "data", "--device", "cpu", "--train-subset", subset]


@pytest.mark.parametrize("method", ["activation", "weight"])
def test_match_says_it_uses_fewer_batches_than_asked(setup, capsys, method):
    tmp, paths = setup
    _, warnings = run(["match", "--a", paths[1], "--b", paths[2], *data_args(tmp), "--method", method,
                       "--batches", 2, "--batch-size", 100, "--out", tmp / "p.pt", "--summary", tmp / "p.json"], capsys)
    assert len(warnings) == 1 and "--batches" in warnings[0] and "asked 2, using 1" in warnings[0], warnings
    summary = json.loads((tmp / "p.json").read_text(encoding="utf-8"))
    assert summary["batches"] == 1 and summary["examples"] == 100
    assert summary["sample"]["unhonoured"]["asked"] == 2 and summary["sample"]["unhonoured"]["used"] == 1
    _, warnings = run(["match", "--a", paths[1], "--b", paths[2], *data_args(tmp), "--method", method,
                       "--batches", 1, "--batch-size", 100, "--out", tmp / "q.pt", "--summary", tmp / "q.json"], capsys)
    assert warnings == []  # asked what the split holds: nothing to say
    assert "unhonoured" not in json.loads((tmp / "q.json").read_text(encoding="utf-8"))["sample"]


def test_interpolate_says_its_samples_are_smaller_than_asked(setup, capsys):
    tmp, paths = setup
    _, warnings = run(["interpolate", "--a", paths[1], "--b", paths[2], *data_args(tmp), "--alphas", 2,
                       "--modes", "plain,bn_reset", "--train-eval-examples", 500, "--eval-batches", 2,
                       "--batch-size", 80, "--out", tmp / "c.csv", "--barriers", tmp / "b.json"], capsys)
    text = "\n".join(warnings)
    assert "--train-eval-examples" in text and "asked 500, using 100" in text, text
    assert "--eval-batches" in text and "asked 2, using 1" not in text  # test split: 2 x 80 of 100 -> all 100
    samples = json.loads((tmp / "b.json").read_text(encoding="utf-8"))["samples"]
    assert samples["eval_train"]["examples"] == 100
    assert samples["eval_train"]["unhonoured"] == {"asked": 500, "used": 100,
                                                   "why": "examples: the split has only 100"}
    assert samples["eval_test"]["unhonoured"]["used"] == 100
    assert len(warnings) == len(set(warnings))  # one line per setting


def test_a_target_sparsity_that_rounds_is_said_and_the_realised_one_recorded(tmp_path, capsys):
    """An MLP with 100 prunable weights cannot be 75.3% sparse: 25 kept is 75.0%, and every file says so."""
    from _pruning_data import make_data

    make_data(tmp_path / "data")
    cfg = {"name": "mlp", "width": 1, "hidden": 2, "depth": 1}  # 40 x 2 + 2 x 10 = 100 prunable weights
    torch.manual_seed(0)
    meta = checkpoints.data_meta(dataset_info("mnist1d"))
    checkpoints.save_checkpoint(tmp_path / "d.pt", build_model(cfg, 10, 1, input_size=40), cfg, meta, 1)
    _, warnings = run(["prune", "--checkpoint", tmp_path / "d.pt", "--targets", "0.753", "--rate", "0.8",
                       "--ft-epochs", 1, "--dataset", "mnist1d", "--data-dir", tmp_path / "data", "--device", "cpu",
                       "--out-dir", tmp_path / "prune"], capsys)
    assert len(warnings) == 1 and "target sparsity 0.753" in warnings[0] and "using 0.75" in warnings[0], warnings
    out = tmp_path / "prune" / "S0.753"
    report = json.loads((out / "sparsity.json").read_text(encoding="utf-8"))
    assert report["realised"] == 0.75 and report["unhonoured"]["sparsity"]["used"] == 0.75
    result = json.loads((out / "result.json").read_text(encoding="utf-8"))
    assert result["sparsity_realised"] == 0.75 and result["unhonoured"]["sparsity"]["asked"] == 0.753
    assert checkpoints.load_mask(out / "mask.pt")["sparsity"]["unhonoured"]["sparsity"]["used"] == 0.75


def test_a_target_that_rounds_within_its_label_is_not_a_warning(tmp_path, capsys):
    from _pruning_data import make_data

    make_data(tmp_path / "data")
    cfg = {"name": "mlp", "width": 1, "hidden": 16, "depth": 1}  # 800: 0.8 is exact
    meta = checkpoints.data_meta(dataset_info("mnist1d"))
    checkpoints.save_checkpoint(tmp_path / "d.pt", build_model(cfg, 10, 1, input_size=40), cfg, meta, 1)
    _, warnings = run(["prune", "--checkpoint", tmp_path / "d.pt", "--targets", "0.8", "--rate", "0.8",
                       "--ft-epochs", 1, "--dataset", "mnist1d", "--data-dir", tmp_path / "data", "--device", "cpu",
                       "--out-dir", tmp_path / "prune"], capsys)
    assert warnings == []
    assert json.loads((tmp_path / "prune" / "S0.8" / "sparsity.json").read_text(encoding="utf-8"))["unhonoured"] == {}


def test_a_batch_larger_than_the_training_split_is_said(setup, capsys):
    """--batch-size 128 on 100 examples is one step of 100 per epoch; the run says it and records it."""
    tmp, paths = setup
    _, warnings = run(["train", "--model", "mlp", "--hidden", 8, "--epochs", 1, "--batch-size", 128,
                       *data_args(tmp), "--out-dir", tmp / "run"], capsys)
    assert len(warnings) == 1 and "--batch-size" in warnings[0] and "asked 128, using 100" in warnings[0], warnings
    result = json.loads((tmp / "run" / "result.json").read_text(encoding="utf-8"))
    assert result["provenance"]["config"]["unhonoured"]["batch_size"]["used"] == 100
    assert result["provenance"]["config"]["steps_per_epoch"] == 1


def test_a_dropped_trailing_batch_is_said(setup, capsys):
    """101 examples at batch 50: the last example would be a batch of one (BatchNorm cannot train on it)."""
    tmp, paths = setup
    _, warnings = run(["train", "--model", "mlp", "--hidden", 8, "--epochs", 1, "--batch-size", 50,
                       *data_args(tmp, subset=101), "--out-dir", tmp / "run"], capsys)
    assert len(warnings) == 1 and "asked 101, using 100" in warnings[0], warnings
    result = json.loads((tmp / "run" / "result.json").read_text(encoding="utf-8"))
    assert result["provenance"]["config"]["unhonoured"]["epoch_examples"]["used"] == 100


def test_a_training_subset_larger_than_the_split_is_said(setup, capsys):
    tmp, paths = setup
    _, warnings = run(["train", "--model", "mlp", "--hidden", 8, "--epochs", 1, "--batch-size", 100,
                       *data_args(tmp, subset=1000), "--out-dir", tmp / "run"], capsys)
    assert len(warnings) == 1 and "--train-subset" in warnings[0] and "asked 1000, using 300" in warnings[0]
    result = json.loads((tmp / "run" / "result.json").read_text(encoding="utf-8"))
    assert result["provenance"]["config"]["n_train"] == 300 and result["provenance"]["config"]["train_subset"] == 1000


def test_a_sparse_run_says_when_its_mask_is_not_the_sparsity_it_is_labelled(setup, capsys):
    """The run's sparsity tag (every figure's S) comes from the mask's label; a mask that keeps another
    fraction is said, and its measured sparsity recorded beside the label."""
    from sparsebasin.models import prunable_keys

    tmp, paths = setup
    model = checkpoints.model_from_checkpoint(paths[1])
    g = torch.Generator().manual_seed(0)
    mask = {k: torch.rand(p.shape, generator=g) < 0.5 for k, p in model.named_parameters()
            if k in prunable_keys(model)}
    checkpoints.save_mask(tmp / "mask.pt", mask, CFG, checkpoints.load_checkpoint(paths[1])["data"],
                          {"requested": 0.9})
    _, warnings = run(["sparse", "--init", paths[1], "--mask", tmp / "mask.pt", "--branch", "lth", "--epochs", 1,
                       "--batch-size", 100, *data_args(tmp), "--out-dir", tmp / "run"], capsys)
    assert len(warnings) == 1 and "asked 0.9" in warnings[0], warnings
    result = json.loads((tmp / "run" / "result.json").read_text(encoding="utf-8"))
    assert result["tags"]["sparsity"] == "0.9"
    recorded = result["provenance"]["config"]["unhonoured"]["sparsity"]["used"]
    assert abs(recorded - result["sparsity_realised"]) < 1e-6 and abs(recorded - 0.5) < 0.05
