"""The match, permute, interpolate and plane steps end to end (in process, tiny MNIST-1D MLPs)."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from sparsebasin import cli
from sparsebasin.checkpoints import data_meta, load_checkpoint, load_mask, model_from_checkpoint, save_checkpoint, save_mask
from sparsebasin.data import dataset_info, mnist1d
from sparsebasin.models import build_model, prunable_keys
from sparsebasin.symmetry import permute_state
from sparsebasin.symmetry.permfile import load_permutation

SMALL = mnist1d.MNIST1DConfig(n_train=300, n_test=100, seed=0)
CFG = {"name": "mlp", "width": 1, "hidden": 8, "depth": 2}


@pytest.fixture
def setup(tmp_path, monkeypatch):
    """Tiny data (the default MNIST-1D config would take seconds to generate) and three checkpoints."""
    real = mnist1d.load
    monkeypatch.setattr(mnist1d, "load", lambda name, root, split, config=None: real(name, root, split, SMALL))
    meta = data_meta(dataset_info("mnist1d"))
    paths = {}
    for seed in (1, 2, 3):
        torch.manual_seed(seed)
        model = build_model(CFG, 10, 1, input_size=40)
        paths[seed] = tmp_path / f"m{seed}.pt"
        save_checkpoint(paths[seed], model, CFG, meta, epoch=seed)
    model = model_from_checkpoint(paths[1])
    g = torch.Generator().manual_seed(0)
    mask = {k: torch.rand(p.shape, generator=g) < 0.5 for k, p in model.named_parameters() if k in prunable_keys(model)}
    save_mask(tmp_path / "mask.pt", mask, CFG, meta, {"overall": 0.5})
    return tmp_path, paths


def run(argv) -> int:
    return cli.main([str(a) for a in argv])


def data_args(tmp):
    return ["--dataset", "mnist1d", "--data-dir", tmp / "data", "--device", "cpu"]


def match(tmp, paths, method="activation", name="perm"):
    argv = ["match", "--a", paths[1], "--b", paths[2], *data_args(tmp), "--method", method, "--batches", 2,
            "--batch-size", 100, "--out", tmp / f"{name}.pt", "--summary", tmp / f"{name}.json", "--tag", "seed=1",
            "--tag", "width=1"]
    assert run(argv) == 0
    return tmp / f"{name}.pt", tmp / f"{name}.json"


@pytest.mark.parametrize("method", ["activation", "weight"])
def test_match_writes_permutation_and_summary(setup, method):
    tmp, paths = setup
    perm_path, summary_path = match(tmp, paths, method)
    obj, spec = load_permutation(perm_path)
    assert obj["model"]["name"] == "mlp" and obj["data"]["name"] == "mnist1d"
    assert set(obj["perm"]) == {"hidden.0", "hidden.1"}
    assert obj["meta"]["method"] == method and obj["meta"]["batches"] == 2
    assert obj["provenance"]["config"]["step"] == "match"
    summary = json.loads(summary_path.read_text())
    assert summary["tags"] == {"seed": "1", "width": "1"}
    assert set(summary["group_correlation"]) == {"hidden.0", "hidden.1"}
    assert summary["mean_correlation"] >= summary["mean_correlation_identity"] - 1e-9
    assert summary["epoch_a"] == 1 and summary["epoch_b"] == 2 and "git_commit" in summary["provenance"]


def test_permute_mask_and_checkpoint_roundtrip(setup):
    tmp, paths = setup
    perm_path, _ = match(tmp, paths)
    obj, spec = load_permutation(perm_path)
    assert run(["permute", "--permutation", perm_path, "--input", tmp / "mask.pt", "--out", tmp / "pmask.pt"]) == 0
    assert run(["permute", "--permutation", perm_path, "--input", tmp / "pmask.pt", "--out", tmp / "back.pt",
                "--inverse"]) == 0
    mask, pmask, back = (load_mask(tmp / n)["mask"] for n in ("mask.pt", "pmask.pt", "back.pt"))
    assert all(torch.equal(mask[k], back[k]) for k in mask)
    assert all(int(mask[k].sum()) == int(pmask[k].sum()) for k in mask)
    expected = permute_state(spec, obj["perm"], mask)
    assert all(torch.equal(pmask[k], expected[k]) for k in mask)
    assert load_mask(tmp / "pmask.pt")["sparsity"] == {"overall": 0.5}

    assert run(["permute", "--permutation", perm_path, "--input", paths[1], "--out", tmp / "pa.pt"]) == 0
    pa = load_checkpoint(tmp / "pa.pt")
    assert pa["epoch"] == 1 and pa["provenance"]["config"]["inverse"] is False
    x = torch.randn(5, 40)
    with torch.no_grad():
        assert torch.allclose(model_from_checkpoint(paths[1])(x), model_from_checkpoint(pa)(x), atol=1e-6)


def test_permute_rejects_wrong_inputs(setup, capsys):
    tmp, paths = setup
    perm_path, _ = match(tmp, paths)
    other = tmp / "wide.pt"
    save_checkpoint(other, build_model({**CFG, "width": 2}, 10, 1, input_size=40), {**CFG, "width": 2},
                    data_meta(dataset_info("mnist1d")), epoch=0)
    assert run(["permute", "--permutation", perm_path, "--input", other, "--out", tmp / "x.pt"]) == 2
    assert "describe different models" in capsys.readouterr().err
    raw = torch.load(perm_path, weights_only=False)
    raw["perm"]["hidden.1"][:] = 0
    raw.pop("checksums")  # a file not written by sparsebasin (an edited one fails its checksum first)
    torch.save(raw, tmp / "bad.pt")
    assert run(["permute", "--permutation", tmp / "bad.pt", "--input", paths[1], "--out", tmp / "x.pt"]) == 2
    err = capsys.readouterr().err
    assert "bad.pt" in err and "repeats an index" in err and err.count("\n") == 1
    missing = tmp / "nope.pt"
    assert run(["permute", "--permutation", perm_path, "--input", missing, "--out", tmp / "x.pt"]) == 2
    assert str(missing) in capsys.readouterr().err
    assert not (tmp / "x.pt").exists()


def test_interpolate_writes_curves_and_barriers(setup):
    tmp, paths = setup
    perm_path, _ = match(tmp, paths)
    argv = ["interpolate", "--a", paths[1], "--b", paths[2], "--permutation", perm_path, *data_args(tmp),
            "--alphas", 3, "--modes", "plain,bn_reset,repair", "--batch-size", 100, "--eval-batches", 1,
            "--reset-batches", 1, "--out", tmp / "lmc.csv", "--barriers", tmp / "bar.json", "--tag", "width=1"]
    assert run(argv) == 0
    with open(tmp / "lmc.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["alpha", "mode", "permuted", "split", "loss", "acc", "error", "width"]
    assert len(rows) == 3 * 3 * 2 * 2  # alphas x modes x (unpermuted, permuted) x splits
    assert {r["permuted"] for r in rows} == {"True", "False"}
    assert (tmp / "lmc.csv.provenance.json").exists()
    bar = json.loads((tmp / "bar.json").read_text())
    assert len(bar["barriers"]) == 3 * 2 * 2 and bar["tags"] == {"width": "1"}
    assert all(b["loss_barrier"] >= 0 and b["error_barrier"] >= 0 for b in bar["barriers"])
    # the analysis reads both as tidy tables
    from sparsebasin.analysis import tidy

    table = tidy.collect([tmp / "bar.json"])
    assert {"mode", "permuted", "split", "loss_barrier", "error_barrier", "width"} <= set(table.columns)

    # without a permutation: one path only (Fig. 4a: dense A vs an IMP model)
    argv = ["interpolate", "--a", paths[1], "--b", paths[3], *data_args(tmp), "--alphas", 2, "--modes", "plain",
            "--splits", "test", "--out", tmp / "l2.csv", "--barriers", tmp / "b2.json"]
    assert run(argv) == 0
    assert len(json.loads((tmp / "b2.json").read_text())["barriers"]) == 1


def test_interpolate_rejects_another_dataset(setup, capsys):
    tmp, paths = setup
    argv = ["interpolate", "--a", paths[1], "--b", paths[2], "--dataset", "cifar10", "--data-dir", tmp,
            "--out", tmp / "l.csv", "--barriers", tmp / "b.json"]
    assert run(argv) == 2
    assert "trained on 'mnist1d'" in capsys.readouterr().err


def test_plane_writes_grid_and_anchors(setup):
    tmp, paths = setup
    perm_path, _ = match(tmp, paths)
    argv = ["plane", "--origin", paths[1], "--p1", paths[3], "--p2", paths[2], "--p2-permutation", perm_path,
            "--inverse", *data_args(tmp), "--grid", 3, "--eval-batches", 1, "--batch-size", 100, "--mode", "plain",
            "--out", tmp / "plane.csv", "--tag", "sparsity=0.9"]
    assert run(argv) == 0
    with open(tmp / "plane.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["point", "u", "v", "mode", "split", "loss", "acc", "error", "sparsity"]
    assert len(rows) == 9 + 3 and [r["point"] for r in rows[-3:]] == ["origin", "p1", "p2"]
    assert rows[-3]["u"] == "0.0" and rows[-3]["v"] == "0.0"
    assert all(r["split"] == "test" for r in rows)


def test_sparse_and_fused_permute_the_mask_in_memory_exactly_as_the_permute_step(setup, capsys):
    """The workflow's permuted runs pass m_A and pi (no mask file of their own): same run as with pi(m_A)."""
    tmp, paths = setup
    perm_path, _ = match(tmp, paths)
    assert run(["permute", "--permutation", perm_path, "--input", tmp / "mask.pt", "--out", tmp / "pmask.pt"]) == 0
    common = ["--init", paths[2], "--branch", "permuted", *data_args(tmp), "--preset", "mnist1d_sparse",
              "--epochs", 1, "--batch-size", 100, "--progress", "log"]
    assert run(["sparse", *common, "--mask", tmp / "pmask.pt", "--out-dir", tmp / "file"]) == 0
    assert run(["sparse", *common, "--mask", tmp / "mask.pt", "--mask-permutation", perm_path,
                "--out-dir", tmp / "memory"]) == 0
    fused = ["fused", *data_args(tmp), "--preset", "mnist1d_sparse", "--epochs", 1, "--batch-size", 100,
             "--progress", "log", "--run", f"out_dir={tmp / 'fused'},init={paths[2]},mask={tmp / 'mask.pt'},"
             f"mask_permutation={perm_path},branch=permuted"]
    assert run(fused) == 0
    ref = load_checkpoint(tmp / "file" / "final.pt")["state_dict"]
    for other in ("memory", "fused"):
        got = load_checkpoint(tmp / other / "final.pt")["state_dict"]
        assert all(torch.equal(ref[k], got[k]) for k in ref), other
    rec = json.loads((tmp / "memory" / "result.json").read_text())
    assert rec["provenance"]["config"]["mask_permutation"] == str(perm_path)
    assert rec["density"] == json.loads((tmp / "file" / "result.json").read_text())["density"]
    # a permutation of another architecture is refused in one line, before training
    other = tmp / "wide_mask.pt"
    wide = build_model({**CFG, "width": 2}, 10, 1, input_size=40)
    save_mask(other, {k: torch.ones_like(p, dtype=torch.bool) for k, p in wide.named_parameters()
                      if k in prunable_keys(wide)}, {**CFG, "width": 2}, data_meta(dataset_info("mnist1d")))
    capsys.readouterr()
    assert run(["sparse", *common, "--mask", other, "--mask-permutation", perm_path, "--out-dir", tmp / "bad"]) == 2
    err = capsys.readouterr().err
    assert "describe different models" in err and err.count("\n") == 1 and not (tmp / "bad" / "final.pt").exists()


def _interp(tmp, paths, perm_path, name, *extra):
    return ["interpolate", "--a", paths[1], "--b", paths[2], "--permutation", perm_path, *data_args(tmp),
            "--alphas", 3, "--modes", "plain,bn_reset,repair", "--batch-size", 100, "--reset-batches", 1,
            "--out", tmp / f"{name}.csv", "--barriers", tmp / f"{name}.json", *extra]


def test_interpolate_evaluates_the_train_split_on_a_recorded_seeded_sample(setup):
    """ImageNet's LMC: the train-split points on a seeded sample (recorded), the test split whole."""
    tmp, paths = setup
    perm_path, _ = match(tmp, paths)
    assert run(_interp(tmp, paths, perm_path, "s", "--train-eval-examples", 120, "--sample-seed", 5)) == 0
    bar = json.loads((tmp / "s.json").read_text())
    assert bar["samples"]["eval_train"] == {"seed": 5, "examples": 120, "of": 300,
                                            "classes": bar["samples"]["eval_train"]["classes"]}
    assert "eval_test" not in bar["samples"]  # the test split is whole
    cfg = json.loads((tmp / "s.csv.provenance.json").read_text())["config"]
    assert cfg["train_examples"] == 120 and cfg["samples"]["eval_train"]["examples"] == 120
    # another seed is another sample: other train numbers, the same test numbers
    assert run(_interp(tmp, paths, perm_path, "t", "--train-eval-examples", 120, "--sample-seed", 6)) == 0
    rows = {n: list(csv.DictReader(open(tmp / f"{n}.csv"))) for n in ("s", "t")}
    pick = lambda n, split: [r["loss"] for r in rows[n] if r["split"] == split and r["mode"] == "plain"]  # noqa: E731
    assert pick("s", "test") == pick("t", "test") and pick("s", "train") != pick("t", "train")


def test_interpolate_and_plane_resume_point_by_point(setup, monkeypatch):
    """A killed evaluation resumes at its next point and ends identical to an uninterrupted one; a point file
    of other inputs is set aside; the file is gone once the outputs are written."""
    from sparsebasin.symmetry import lmc

    tmp, paths = setup
    perm_path, _ = match(tmp, paths)
    assert run(_interp(tmp, paths, perm_path, "whole")) == 0
    assert not list(tmp.glob(".*.points.json"))

    real, calls = lmc.evaluate_state, []

    def dies_after(n):
        def fn(*a, **k):
            if len(calls) == n:
                raise KeyboardInterrupt  # a kill: nothing after this point runs
            calls.append(1)
            return real(*a, **k)
        return fn

    # an MLP has no BN: bn_reset reuses plain, so 2 evaluations per alpha; the 3rd alpha dies half-way
    monkeypatch.setattr(lmc, "evaluate_state", dies_after(5))
    assert run(_interp(tmp, paths, perm_path, "cut")) != 0
    log = tmp / ".cut.csv.points.json"
    assert len(json.loads(log.read_text())["points"]) == 2 and not (tmp / "cut.csv").exists()
    calls.clear()
    monkeypatch.setattr(lmc, "evaluate_state", dies_after(10**6))
    assert run(_interp(tmp, paths, perm_path, "cut")) == 0
    assert len(calls) == (6 - 2) * 2  # only the 4 missing (alpha, path) points
    assert (tmp / "cut.csv").read_text() == (tmp / "whole.csv").read_text()
    w, c = (json.loads((tmp / f"{n}.json").read_text()) for n in ("whole", "cut"))
    assert w["barriers"] == c["barriers"] and w["samples"] == c["samples"] and not log.exists()

    # points of other inputs (B is another model) are not reused
    calls.clear()
    monkeypatch.setattr(lmc, "evaluate_state", dies_after(4))
    assert run(_interp(tmp, paths, perm_path, "cut")) != 0
    other = _interp(tmp, paths, perm_path, "cut")
    other[other.index("--b") + 1] = paths[3]
    calls.clear()
    monkeypatch.setattr(lmc, "evaluate_state", dies_after(10**6))
    assert run(other) == 0 and len(calls) == 6 * 2

    # the plane: the same, per grid point
    plane = ["plane", "--origin", paths[1], "--p1", paths[3], "--p2", paths[2], *data_args(tmp), "--grid", 3,
             "--batch-size", 100, "--mode", "bn_reset", "--reset-batches", 1]
    assert run([*plane, "--out", tmp / "pw.csv"]) == 0
    calls.clear()
    monkeypatch.setattr(lmc, "evaluate_state", dies_after(5))
    assert run([*plane, "--out", tmp / "pc.csv"]) != 0
    calls.clear()
    monkeypatch.setattr(lmc, "evaluate_state", dies_after(10**6))
    assert run([*plane, "--out", tmp / "pc.csv"]) == 0 and len(calls) == 12 - 5
    assert (tmp / "pc.csv").read_text() == (tmp / "pw.csv").read_text()


def test_statistics_and_matching_on_one_example_are_refused_and_a_last_batch_of_one_is_dropped(setup, capsys):
    """Train-mode BatchNorm (BN reset, REPAIR) cannot normalise one example, and a correlation over one example
    is 0/0 (matching would write the identity as "matched"): both refuse; a sample whose last batch would hold
    one example leaves that example out and records it (probe of stop 33: a Python traceback before)."""
    tmp, paths = setup
    curve = ["--alphas", 2, "--modes", "plain,repair", "--splits", "test"]
    one = ["--a", paths[1], "--b", paths[2], *data_args(tmp), "--train-subset", 1]
    assert run(["interpolate", *one, *curve, "--out", tmp / "c1.csv", "--barriers", tmp / "b1.json"]) == 2
    assert run(["match", *one, "--out", tmp / "p1.pt", "--summary", tmp / "p1.json"]) == 2
    err = capsys.readouterr().err
    assert "BN reset and REPAIR estimate statistics over a batch: they need at least 2 training examples" in err
    assert "matching needs at least 2 training examples" in err
    assert not any((tmp / f).exists() for f in ("c1.csv", "b1.json", "p1.pt", "p1.json"))
    # 201 examples in batches of 100: the last batch would be a single example
    argv = ["interpolate", "--a", paths[1], "--b", paths[2], *data_args(tmp), "--train-subset", 201, "--batch-size",
            100, "--reset-batches", 3, *curve, "--out", tmp / "c.csv", "--barriers", tmp / "b.json"]
    assert run(argv) == 0
    statistics = json.loads((tmp / "b.json").read_text())["samples"]["statistics"]
    assert statistics["dropped_last_single_example"] is True and statistics["examples"] == 200


def test_an_option_the_method_or_the_splits_do_not_read_is_said_and_recorded(setup, capsys):
    """--stat with weight matching, --train-eval-examples without the train split: accepted, but said in one
    warning line and recorded (they were silently ignored)."""
    tmp, paths = setup
    argv = ["match", "--a", paths[1], "--b", paths[2], *data_args(tmp), "--method", "weight", "--stat", "covariance",
            "--batches", 1, "--batch-size", 100, "--out", tmp / "w.pt", "--summary", tmp / "w.json"]
    assert run(argv) == 0
    assert json.loads((tmp / "w.json").read_text())["unhonoured"]["stat"]["asked"] == "covariance"
    argv = ["interpolate", "--a", paths[1], "--b", paths[2], *data_args(tmp), "--alphas", 2, "--modes", "plain",
            "--splits", "test", "--train-eval-examples", 10, "--out", tmp / "c.csv", "--barriers", tmp / "b.json"]
    assert run(argv) == 0
    assert json.loads((tmp / "b.json").read_text())["samples"]["eval_train"]["unhonoured"]["asked"] == 10
    err = capsys.readouterr().err
    assert "warning: --stat: asked covariance" in err and "warning: --train-eval-examples: asked 10" in err
