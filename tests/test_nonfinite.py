"""Non-finite in, refusal out; non-finite produced, recorded as such (null with a reason), never a number.

Inputs: a NaN or inf in any tensor a step reads (weights, BatchNorm running
statistics, prediction logits) is refused by the artifact loader, for every
step: exit 2, one line naming the file, the tensor and what is wrong, and no
output written. Computations: finite weights whose outputs overflow give
null barriers and empty CSV cells with a ``nonfinite`` reason, and the JSON
stays valid JSON.
"""

from __future__ import annotations

import csv
import json

import pytest
import torch

from sparsebasin import cli, io
from sparsebasin.checkpoints import data_meta, save_checkpoint, save_mask
from sparsebasin.data import dataset_info, mnist1d
from sparsebasin.errors import UserError
from sparsebasin.models import build_model, prunable_keys
from sparsebasin.symmetry.permfile import save_permutation
from sparsebasin.symmetry.spec import spec_from_meta

SMALL = mnist1d.MNIST1DConfig(n_train=200, n_test=100, seed=0)
CFG = {"name": "mlp", "width": 1, "hidden": 8, "depth": 2}
META = data_meta(dataset_info("mnist1d"))
RESNET = {"name": "resnet20", "width": 1}
CIFAR = data_meta(dataset_info("cifar10"))


def strict_json(path):
    """json.loads that refuses the bare NaN/Infinity Python's json module accepts."""
    def bad(name):
        raise ValueError(f"{path}: {name} is not JSON")
    return json.loads(path.read_text(encoding="utf-8"), parse_constant=bad)


@pytest.fixture
def ws(tmp_path, monkeypatch):
    real = mnist1d.load
    monkeypatch.setattr(mnist1d, "load", lambda name, root, split, config=None: real(name, root, split, SMALL))
    paths = {}
    for seed in (1, 2, 3):
        torch.manual_seed(seed)
        paths[seed] = tmp_path / f"m{seed}.pt"
        save_checkpoint(paths[seed], build_model(CFG, 10, 1, input_size=40), CFG, META, epoch=seed)
    return tmp_path, paths


def poison(path, key, values, where=(0, 1, 2, 3)):
    """Rewrite a checkpoint with non-finite values at flat positions ``where`` of ``key`` (a fresh save:
    its checksums are right, so only the values are wrong)."""
    from sparsebasin.checkpoints import load_checkpoint

    ck = load_checkpoint(path)
    t = ck["state_dict"][key].reshape(-1)
    for i, v in zip(where, values):
        t[i] = v
    io.save_artifact(path, "checkpoint", {k: v for k, v in ck.items() if k not in ("format", "provenance")})


def data_args(tmp):
    return ["--dataset", "mnist1d", "--data-dir", str(tmp / "data"), "--device", "cpu"]


def refused(argv, capsys, *fragments):
    """Exit 2, one stderr line ``error: ...`` holding every fragment, no traceback."""
    rc = cli.main([str(a) for a in argv])
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    last = err.splitlines()[-1]
    assert last.startswith("error: ") and "Traceback" not in err, err
    for f in fragments:
        assert f in last, last
    return last


NAN3_INF1 = [float("nan")] * 3 + [float("inf")]


def test_match_refuses_a_nan_weight(ws, capsys):
    tmp, paths = ws
    poison(paths[1], "hidden.0.weight", NAN3_INF1)
    line = refused(["match", "--a", paths[1], "--b", paths[2], *data_args(tmp), "--batches", 1, "--batch-size", 100,
                    "--out", tmp / "p.pt", "--summary", tmp / "p.json"], capsys,
                   str(paths[1]), "tensor hidden.0.weight has 3 NaN and 1 inf values", "diverged")
    assert "rerun it" in line
    assert not (tmp / "p.pt").exists() and not (tmp / "p.json").exists()


def test_interpolate_refuses_one_inf_weight(ws, capsys):
    tmp, paths = ws
    poison(paths[2], "head.weight", [float("inf")])
    refused(["interpolate", "--a", paths[1], "--b", paths[2], *data_args(tmp), "--alphas", 3, "--modes", "plain",
             "--out", tmp / "c.csv", "--barriers", tmp / "b.json"], capsys,
            str(paths[2]), "tensor head.weight has 1 inf value;")
    assert not (tmp / "c.csv").exists() and not (tmp / "b.json").exists()


def test_plane_refuses_a_nan_weight(ws, capsys):
    tmp, paths = ws
    poison(paths[3], "hidden.1.bias", [float("nan")])
    refused(["plane", "--origin", paths[1], "--p1", paths[2], "--p2", paths[3], *data_args(tmp), "--grid", 2,
             "--mode", "plain", "--out", tmp / "plane.csv"], capsys, str(paths[3]), "tensor hidden.1.bias has 1 NaN value")
    assert not (tmp / "plane.csv").exists()


def test_prune_refuses_a_nan_dense_checkpoint(ws, capsys):
    tmp, paths = ws
    poison(paths[1], "hidden.0.weight", [float("-inf")] * 2)
    refused(["prune", "--checkpoint", paths[1], "--targets", "0.5", *data_args(tmp), "--ft-epochs", 1,
             "--out-dir", tmp / "imp"], capsys, str(paths[1]), "tensor hidden.0.weight has 2 inf values")
    assert not any((tmp / "imp").rglob("*.pt"))


def test_sparse_and_fused_refuse_a_non_finite_init(ws, capsys):
    tmp, paths = ws
    from sparsebasin.checkpoints import model_from_checkpoint

    m = model_from_checkpoint(paths[1])
    mask = {k: torch.rand(p.shape, generator=torch.Generator().manual_seed(0)) < 0.5
            for k, p in m.named_parameters() if k in prunable_keys(m)}
    save_mask(tmp / "mask.pt", mask, CFG, META, {"requested": 0.5})
    poison(paths[1], "head.bias", [float("nan")])
    common = [*data_args(tmp), "--epochs", 1, "--batch-size", 50, "--progress", "log"]
    refused(["sparse", "--init", paths[1], "--mask", tmp / "mask.pt", "--branch", "lth", *common,
             "--out-dir", tmp / "s"], capsys, str(paths[1]), "tensor head.bias has 1 NaN value")
    refused(["fused", "--run", f"out_dir={tmp / 'f1'},init={paths[2]},mask={tmp / 'mask.pt'},branch=lth",
             "--run", f"out_dir={tmp / 'f2'},init={paths[1]},mask={tmp / 'mask.pt'},branch=lth", *common],
            capsys, str(paths[1]), "tensor head.bias has 1 NaN value")
    assert not any(tmp.glob("[sf]*/result.json"))


def test_permute_refuses_nan_and_negative_batchnorm_running_statistics(tmp_path, capsys):
    """BN buffers are weights too: a NaN running_var (or a negative one) would give NaN outputs at eval."""
    model, spec = spec_from_meta(RESNET, CIFAR)
    save_permutation(tmp_path / "perm.pt", {g: torch.arange(n) for g, n in spec.sizes.items()}, RESNET, CIFAR,
                     {"method": "weight"})
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    sd["layer1.0.bn1.running_var"][2] = float("nan")
    save_checkpoint(tmp_path / "a.pt", sd, RESNET, CIFAR, epoch=1)
    refused(["permute", "--permutation", tmp_path / "perm.pt", "--input", tmp_path / "a.pt", "--out", tmp_path / "pa.pt"],
            capsys, "a.pt: tensor layer1.0.bn1.running_var has 1 NaN value")
    sd["layer1.0.bn1.running_var"][2] = -0.5
    save_checkpoint(tmp_path / "a.pt", sd, RESNET, CIFAR, epoch=1)
    refused(["permute", "--permutation", tmp_path / "perm.pt", "--input", tmp_path / "a.pt", "--out", tmp_path / "pa.pt"],
            capsys, "tensor layer1.0.bn1.running_var has 1 negative value")
    sd["layer1.0.bn1.running_var"][2] = 1.0
    sd["bn1.running_mean"][0] = float("inf")
    save_checkpoint(tmp_path / "a.pt", sd, RESNET, CIFAR, epoch=1)
    refused(["permute", "--permutation", tmp_path / "perm.pt", "--input", tmp_path / "a.pt", "--out", tmp_path / "pa.pt"],
            capsys, "tensor bn1.running_mean has 1 inf value")
    assert not (tmp_path / "pa.pt").exists()


def test_ensemble_refuses_nan_logits(tmp_path, capsys):
    labels = torch.randint(0, 10, (30,), generator=torch.Generator().manual_seed(0))
    paths = []
    for i in range(3):
        logits = torch.randn(30, 10)
        if i == 2:
            logits[4, 7] = float("nan")
        paths.append(tmp_path / f"p{i}.pt")
        io.save_artifact(paths[-1], "predictions", {"logits": logits, "labels": labels})
    refused(["ensemble", "--predictions", *paths, "--group", "g", "--out", tmp_path / "e.json"], capsys,
            "p2.pt: tensor logits has 1 NaN value; the run that wrote it diverged")
    assert not (tmp_path / "e.json").exists()


def test_resume_file_with_nan_optimizer_state_is_set_aside(tmp_path):
    from sparsebasin.training import resume

    m = build_model(CFG, 10, 1, input_size=40)
    p = tmp_path / ".resume.pt"
    resume.save(p, fingerprint="f", epoch=1, model=m.state_dict(), optimizer={"state": {0: {
        "momentum_buffer": torch.tensor([1.0, float("nan")])}}, "param_groups": []}, schedule={}, rows=[])
    with pytest.raises(UserError, match=r"tensor optimizer.state.0.momentum_buffer has 1 NaN value"):
        io.load_artifact(p, "resume")
    assert resume.load(p, "f", "run") is None  # ignored with a log line: the run starts over


# ------------------------------------------------------------ produced --

def overflowing(path, factor=3e37):
    """Finite weights whose outputs overflow float32: loaded fine, evaluated to inf/NaN."""
    from sparsebasin.checkpoints import load_checkpoint

    ck = load_checkpoint(path)
    ck["state_dict"]["head.weight"] = ck["state_dict"]["head.weight"].sign() * factor
    io.save_artifact(path, "checkpoint", {k: v for k, v in ck.items() if k not in ("format", "provenance")})


def test_interpolate_records_a_diverged_curve_as_null_with_reasons(ws, capsys):
    tmp, paths = ws
    overflowing(paths[2])
    assert cli.main(["interpolate", "--a", str(paths[1]), "--b", str(paths[2]), *data_args(tmp), "--alphas", "3",
                     "--modes", "plain", "--splits", "test", "--out", str(tmp / "c.csv"),
                     "--barriers", str(tmp / "b.json")]) == 0
    err = capsys.readouterr().err
    result = strict_json(tmp / "b.json")  # valid JSON: no bare NaN
    (entry,) = result["barriers"]
    assert entry["loss_barrier"] is None and entry["error_barrier"] is None  # never 0.0
    assert entry["loss_a"] is not None and entry["loss_b"] is None
    assert set(result["nonfinite"]) >= {"barriers.0.loss_barrier", "barriers.0.error_barrier", "barriers.0.loss_b"}
    assert "no finite loss at alpha = 0.5, 1 " in result["nonfinite"]["barriers.0.loss_barrier"]
    rows = list(csv.DictReader((tmp / "c.csv").open(encoding="utf-8")))
    assert [r["loss"] == "" for r in rows] == [False, True, True]
    assert not any(v.lower() in ("nan", "inf", "-inf") for r in rows for v in r.values())
    assert "warning:" in err and "not finite" in err
    side = strict_json(tmp / "c.csv.provenance.json")
    assert "2 of 3 points" in side["nonfinite"]["loss"]


def test_interpolate_all_finite_has_an_empty_nonfinite_map(ws):
    tmp, paths = ws
    assert cli.main(["interpolate", "--a", str(paths[1]), "--b", str(paths[2]), *data_args(tmp), "--alphas", "3",
                     "--modes", "plain", "--splits", "test", "--out", str(tmp / "c.csv"),
                     "--barriers", str(tmp / "b.json")]) == 0
    result = strict_json(tmp / "b.json")
    assert result["nonfinite"] == {} and isinstance(result["barriers"][0]["error_barrier"], float)


def test_plane_writes_overflowing_points_as_empty_cells(ws, capsys):
    tmp, paths = ws
    overflowing(paths[3])
    assert cli.main(["plane", "--origin", str(paths[1]), "--p1", str(paths[2]), "--p2", str(paths[3]),
                     *data_args(tmp), "--grid", "2", "--mode", "plain", "--out", str(tmp / "plane.csv")]) == 0
    rows = list(csv.DictReader((tmp / "plane.csv").open(encoding="utf-8")))
    assert not any(v.lower() in ("nan", "inf", "-inf") for r in rows for v in r.values())
    p2 = next(r for r in rows if r["point"] == "p2")
    origin = next(r for r in rows if r["point"] == "origin")
    assert p2["loss"] == p2["acc"] == p2["error"] == "" and origin["loss"] != ""
    assert "warning:" in capsys.readouterr().err
    assert strict_json(tmp / "plane.csv.provenance.json")["nonfinite"]["loss"]


def test_match_with_overflowing_activations_is_one_line(ws, capsys):
    tmp, paths = ws
    from sparsebasin.checkpoints import load_checkpoint

    ck = load_checkpoint(paths[2])
    w = ck["state_dict"]["hidden.0.weight"]
    ck["state_dict"]["hidden.0.weight"] = w.sign() * 3e38  # finite, but the first layer's outputs overflow
    io.save_artifact(paths[2], "checkpoint", {k: v for k, v in ck.items() if k not in ("format", "provenance")})
    refused(["match", "--a", paths[1], "--b", paths[2], *data_args(tmp), "--batches", 1, "--batch-size", 100,
             "--out", tmp / "p.pt", "--summary", tmp / "p.json"], capsys,
            "activation statistics of group hidden.0 are not finite", str(paths[2]))
    assert not (tmp / "p.pt").exists()
    # weight matching needs no activations: the permutation is written, the correlations it reports are null
    assert cli.main(["match", "--a", str(paths[1]), "--b", str(paths[2]), *data_args(tmp), "--method", "weight",
                     "--batches", "1", "--batch-size", "100", "--out", str(tmp / "w.pt"),
                     "--summary", str(tmp / "w.json")]) == 0
    summary = strict_json(tmp / "w.json")
    assert summary["mean_correlation"] is None and "mean_correlation" in summary["nonfinite"]


def test_write_json_never_writes_a_bare_nan(tmp_path):
    import numpy as np

    io.write_json(tmp_path / "x.json", {"a": float("nan"), "b": [1.0, float("inf")], "c": np.float32("nan"),
                                       "d": torch.tensor(float("-inf")), "e": 0.5})
    assert strict_json(tmp_path / "x.json") == {"a": None, "b": [1.0, None], "c": None, "d": None, "e": 0.5}
