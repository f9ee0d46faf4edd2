"""Every training result carries ``health`` (sparsebasin.health) and the precision it trained in.

Tiny MNIST-1D MLPs on CPU: a run on random labels ends at chance, a run from
an init whose logits are ~1e4 ends with an exploded (finite) test loss; both
finish, are marked in result.json and say so in one warning line. Covers
train (fit), sparse, fused members, IMP round and target results, and a
result written before health existed (filled in on the "already finished"
rerun, without training).
"""

from __future__ import annotations

import json

import pytest
import torch

from sparsebasin import cli, data, io
from sparsebasin.checkpoints import data_meta, load_checkpoint, save_checkpoint, save_mask
from sparsebasin.data import dataset_info, mnist1d
from sparsebasin.models import build_model, prunable_keys

SMALL = mnist1d.MNIST1DConfig(n_train=300, n_test=200, seed=0)
CFG = {"name": "mlp", "width": 1, "hidden": 8, "depth": 2}
META = data_meta(dataset_info("mnist1d"))


@pytest.fixture
def ws(tmp_path, monkeypatch):
    real = mnist1d.load
    monkeypatch.setattr(mnist1d, "load", lambda name, root, split, config=None: real(name, root, split, SMALL))
    torch.manual_seed(0)
    model = build_model(CFG, 10, 1, input_size=40)
    save_checkpoint(tmp_path / "init.pt", model, CFG, META, epoch=0)
    ck = load_checkpoint(tmp_path / "init.pt")
    ck["state_dict"]["head.weight"] = ck["state_dict"]["head.weight"] * 3e3  # logits ~1e4: loss explodes, finitely
    io.save_artifact(tmp_path / "hot.pt", "checkpoint", {k: v for k, v in ck.items() if k not in ("format", "provenance")})
    mask = {k: torch.ones(p.shape, dtype=torch.bool) for k, p in model.named_parameters() if k in prunable_keys(model)}
    save_mask(tmp_path / "mask.pt", mask, CFG, META, {"requested": 0.0})
    return tmp_path


def read(path):
    return json.loads(path.read_text(encoding="utf-8"))


def step_args(tmp):
    return ["--dataset", "mnist1d", "--data-dir", str(tmp / "data"), "--device", "cpu", "--epochs", "1",
            "--batch-size", "100", "--lr", "1e-9", "--progress", "log"]


def test_a_run_at_chance_is_marked_dead(tmp_path, capsys):
    from sparsebasin.training import fit, resolve_config

    g = torch.Generator().manual_seed(0)
    ds = data.ArrayDataset(dataset_info("mnist1d"), torch.randn(400, 40, generator=g),
                           torch.randint(0, 10, (400,), generator=g))
    cfg = resolve_config("mnist1d_dense", epochs=1, batch_size=100, lr=1e-6)
    res = fit(build_model(CFG, 10, 1, input_size=40), ds, ds, cfg, out_dir=tmp_path / "run", model_cfg=CFG,
              data_meta=META, run_name="dense-A", device="cpu", progress="log")
    on_disk = read(tmp_path / "run" / "result.json")
    assert on_disk["health"]["status"] == "chance" == res["health"]["status"]
    assert "not significantly above chance" in on_disk["health"]["reasons"][0]
    err = capsys.readouterr().err
    assert "warning: dense-A: dead (chance accuracy)" in err


def test_sparse_run_with_an_exploded_loss_is_marked_and_warned(ws, capsys):
    out = ws / "sparse"
    assert cli.main(["sparse", "--init", str(ws / "hot.pt"), "--mask", str(ws / "mask.pt"), "--branch", "lth",
                     *step_args(ws), "--out-dir", str(out)]) == 0
    result = read(out / "result.json")
    assert result["health"]["status"] == "exploded"
    assert any("10 x ln(10)" in r for r in result["health"]["reasons"])
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning:" in line]
    assert len(warnings) == 1 and "diverged (exploded loss)" in warnings[0]


def test_fused_members_are_each_assessed(ws):
    runs = [f"out_dir={ws / 'f1'},init={ws / 'init.pt'},mask={ws / 'mask.pt'},branch=lth",
            f"out_dir={ws / 'f2'},init={ws / 'hot.pt'},mask={ws / 'mask.pt'},branch=lth"]
    assert cli.main(["fused", "--run", runs[0], "--run", runs[1], *step_args(ws)]) == 0
    assert read(ws / "f2" / "result.json")["health"]["status"] == "exploded"
    assert read(ws / "f1" / "result.json")["health"]["status"] in ("ok", "chance")  # an untrained init: honest either way
    assert "health" in read(ws / "f1" / "result.json")


def test_imp_round_and_target_results_carry_health(ws):
    out = ws / "imp"
    assert cli.main(["prune", "--checkpoint", str(ws / "hot.pt"), "--targets", "0.5", "--rate", "0.5",
                     "--dataset", "mnist1d", "--data-dir", str(ws / "data"), "--device", "cpu", "--ft-epochs", "1",
                     "--ft-lr", "1e-9", "--ft-batch-size", "100", "--progress", "log", "--out-dir", str(out)]) == 0
    target = read(out / "S0.5" / "result.json")
    assert target["health"]["status"] == "exploded"
    rounds = list((out / "rounds").rglob("result.json"))
    assert rounds and all("health" in read(p) for p in rounds)


def test_a_result_written_before_health_gets_it_without_retraining(ws, capsys):
    argv = ["sparse", "--init", str(ws / "hot.pt"), "--mask", str(ws / "mask.pt"), "--branch", "lth",
            *step_args(ws), "--out-dir", str(ws / "old")]
    assert cli.main(argv) == 0
    path = ws / "old" / "result.json"
    old = read(path)
    del old["health"]
    io.write_json(path, old)
    final = (ws / "old" / "final.pt").stat().st_mtime_ns
    capsys.readouterr()
    assert cli.main(argv) == 0
    err = capsys.readouterr().err
    assert "already finished" in err and "diverged (exploded loss)" in err
    assert read(path)["health"]["status"] == "exploded"
    assert (ws / "old" / "final.pt").stat().st_mtime_ns == final


def test_a_cpu_run_records_fp32_and_keeps_its_fingerprint(ws):
    """bf16 autocast is CUDA-only: the run trained in fp32 and says so; the request (hashed into the
    fingerprint that decides "already finished") keeps the preset's bf16, so runs finished before stay
    finished."""
    from sparsebasin.training import resume

    out = ws / "prec"
    assert cli.main(["sparse", "--init", str(ws / "init.pt"), "--mask", str(ws / "mask.pt"), "--branch", "lth",
                     *step_args(ws), "--out-dir", str(out)]) == 0
    result = read(out / "result.json")
    assert result["precision"] == "fp32" and result["precision_requested"] == "bf16"
    assert result["provenance"]["config"]["train"]["precision"] == "fp32"
    assert result["provenance"]["config"]["train"]["precision_requested"] == "bf16"
    assert result["request"]["train"]["precision"] == "bf16"
    assert result["fingerprint"] == resume.fingerprint(result["request"])


def test_steps_that_read_a_flagged_run_say_so(ws, capsys):
    out = ws / "sparse"
    assert cli.main(["sparse", "--init", str(ws / "hot.pt"), "--mask", str(ws / "mask.pt"), "--branch", "lth",
                     *step_args(ws), "--out-dir", str(out)]) == 0
    capsys.readouterr()
    assert cli.main(["interpolate", "--a", str(ws / "init.pt"), "--b", str(out / "final.pt"), "--dataset", "mnist1d",
                     "--data-dir", str(ws / "data"), "--device", "cpu", "--alphas", "2", "--modes", "plain",
                     "--splits", "test", "--out", str(ws / "c.csv"), "--barriers", str(ws / "b.json")]) == 0
    err = capsys.readouterr().err
    assert f"warning: {out / 'final.pt'} comes from a run marked diverged (exploded loss)" in err
