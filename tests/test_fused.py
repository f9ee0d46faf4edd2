"""Fused training: a stacked group equals separate ``fit`` runs up to float rounding.

Covers both engines on the MLP, VGG11 with on-device augmentation, ResNet20
with BatchNorm (running statistics and ``num_batches_tracked`` per run), the
data path, resume, divergence, validation, and the ``fused`` step against the
``sparse`` step on real (small) MNIST-1D data.
"""

from __future__ import annotations

import csv
import hashlib
import io as _io
import json
from pathlib import Path

import pytest
import torch

from sparsebasin import checkpoints, cli
from sparsebasin.training import fused
from sparsebasin.data import batches, dataset_info, mnist1d
from sparsebasin.data.base import ArrayDataset, DatasetInfo
from sparsebasin.errors import TrainingDiverged, UserError
from sparsebasin.training.fused import GroupMember, StackedBatches, fit_fused
from sparsebasin.training.runs import parse_run_arg
from sparsebasin.models import build_model, prunable_keys
from sparsebasin.pruning import prune_to, sparsity_report
from sparsebasin.training import TrainConfig, fit
from sparsebasin.training.loop import METRICS_COLUMNS

RTOL, ATOL = 1e-4, 1e-6

FLAT = DatasetInfo(name="synthetic", num_classes=4, in_channels=1, input_shape=(12,), mean=(0.0,), std=(1.0,),
                   augment=False, flip=False)
FLAT_META = {"name": "synthetic", "num_classes": 4, "in_channels": 1, "input_size": 12}
MLP_CFG = {"name": "mlp", "width": 1, "depth": 2, "hidden": 16}
IMG = DatasetInfo(name="img", num_classes=10, in_channels=3, input_shape=(3, 32, 32), mean=(0.5, 0.5, 0.5),
                  std=(0.25, 0.25, 0.25), augment=True, flip=True)
IMG_META = {"name": "img", "num_classes": 10, "in_channels": 3, "input_size": 3072}


def flat_data(n: int, seed: int) -> ArrayDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 12, generator=g)
    return ArrayDataset(FLAT, x, x[:, :4].argmax(1).long())


def image_data(n: int, seed: int) -> ArrayDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)
    y = torch.randint(0, 10, (n,), generator=g)
    return ArrayDataset(IMG, x, y)


def build(cfg: dict, meta: dict, seed: int):
    torch.manual_seed(seed)
    return checkpoints.build_from_meta(cfg, meta)


def magnitude_mask(model, sparsity: float) -> dict:
    sd = model.state_dict()
    keys = prunable_keys(model)
    return prune_to(sd, {k: torch.ones_like(sd[k], dtype=torch.bool) for k in keys}, sparsity)


def state(path: Path) -> dict:
    return checkpoints.load_checkpoint(path)["state_dict"]


def assert_close_states(a: dict, b: dict, rtol=RTOL, atol=ATOL) -> None:
    assert list(a) == list(b)
    for k in a:
        assert a[k].shape == b[k].shape and a[k].dtype == b[k].dtype, k
        if a[k].is_floating_point():
            assert torch.allclose(a[k], b[k], rtol=rtol, atol=atol), (k, (a[k] - b[k]).abs().max().item())
        else:
            assert torch.equal(a[k], b[k]), k


def assert_exact_zeros(sd: dict, mask: dict) -> None:
    for k, keep in mask.items():
        pruned = sd[k][~keep]
        assert pruned.numel() and bool((pruned == 0).all()), k
        assert not torch.signbit(pruned).any(), f"{k}: a pruned weight is -0.0"


def read_csv(path: Path) -> list[dict]:
    with open(path) as fh:
        return list(csv.DictReader(fh))


def run_group(cfg_model, meta, specs, train, test, cfg, root: Path, save_epochs=(), engine="auto", **kw):
    """specs: [(init seed, data seed, mask or None)]; returns (separate results, fused results)."""
    sep = [fit(build(cfg_model, meta, s), train, test, cfg, out_dir=root / f"sep{i}", mask=m, data_seed=d,
               save_epochs=save_epochs, model_cfg=cfg_model, data_meta=meta, run_name=f"run{i}", tags={"i": str(i)},
               device="cpu", progress="log", init_seed=s)
           for i, (s, d, m) in enumerate(specs)]
    members = [GroupMember(model=build(cfg_model, meta, s), out_dir=root / f"fused{i}", run_name=f"run{i}",
                           data_seed=d, mask=m, tags={"i": str(i)}, init_seed=s)
               for i, (s, d, m) in enumerate(specs)]
    res = fit_fused(members, train, test, cfg, model_cfg=cfg_model, data_meta=meta, save_epochs=save_epochs,
                    device="cpu", progress="log", engine=engine, **kw)
    return sep, res


# ----------------------------------------------------------------- MLP --

@pytest.mark.parametrize("engine", ["mlp", "grouped"])
def test_mlp_group_equals_separate_runs(tmp_path, engine):
    cfg = TrainConfig(epochs=4, lr=0.05, momentum=0.9, weight_decay=5e-4, batch_size=32)
    train, test = flat_data(300, 0), flat_data(50, 1)
    masks = [magnitude_mask(build(MLP_CFG, FLAT_META, 0), 0.5), magnitude_mask(build(MLP_CFG, FLAT_META, 1), 0.9),
             None]
    specs = [(0, 10, masks[0]), (1, 11, masks[1]), (2, 12, None)]
    sep, res = run_group(MLP_CFG, FLAT_META, specs, train, test, cfg, tmp_path, save_epochs=[0, 2], engine=engine)
    for i, (_, _, mask) in enumerate(specs):
        a_dir, b_dir = tmp_path / f"sep{i}", tmp_path / f"fused{i}"
        for name in ("final.pt", "ckpt/epoch0.pt", "ckpt/epoch2.pt"):
            a, b = checkpoints.load_checkpoint(a_dir / name), checkpoints.load_checkpoint(b_dir / name)
            assert_close_states(a["state_dict"], b["state_dict"])
            if engine == "mlp" and torch.backends.mkl.is_available():
                # The mlp engine runs autograd's own kernels: with MKL, batched == per-run bit for bit.
                assert_close_states(a["state_dict"], b["state_dict"], rtol=0, atol=0)
            assert (a["epoch"], a["model"], a["data"], a.get("mask_sparsity")) == \
                   (b["epoch"], b["model"], b["data"], b.get("mask_sparsity"))
            if mask is not None:
                assert_exact_zeros(b["state_dict"], mask)
        # Same result record, same metrics table.
        assert sorted(res[i]) == sorted(sep[i])
        assert res[i]["run"] == sep[i]["run"] and res[i]["tags"] == sep[i]["tags"] == {"i": str(i)}
        assert res[i]["density"] == sep[i]["density"] and res[i]["epochs"] == 4
        assert res[i]["test_acc"] == pytest.approx(sep[i]["test_acc"], abs=1 / 50 + 1e-9)
        assert res[i]["train_loss"] == pytest.approx(sep[i]["train_loss"], rel=1e-4)
        assert json.loads((b_dir / "result.json").read_text())["test_acc"] == res[i]["test_acc"]
        rows_a, rows_b = read_csv(a_dir / "metrics.csv"), read_csv(b_dir / "metrics.csv")
        assert list(rows_b[0]) == list(METRICS_COLUMNS) and len(rows_a) == len(rows_b) == 4
        for ra, rb in zip(rows_a, rows_b):
            assert float(ra["lr"]) == float(rb["lr"])
            assert float(ra["train_loss"]) == pytest.approx(float(rb["train_loss"]), rel=1e-4)
            assert float(ra["test_loss"]) == pytest.approx(float(rb["test_loss"]), rel=1e-4)
        pa = torch.load(a_dir / "predictions.pt", weights_only=False)
        pb = torch.load(b_dir / "predictions.pt", weights_only=False)
        assert pa["format"] == pb["format"] and torch.equal(pa["labels"], pb["labels"])
        assert torch.allclose(pa["logits"], pb["logits"], rtol=1e-4, atol=1e-5)
        assert not (b_dir / fused.SCRATCH_NAME).exists() and not (b_dir / ".resume.pt").exists()
        prov = res[i]["provenance"]["config"]
        assert prov["fused"]["runs"] == 3 and prov["fused"]["index"] == i and prov["fused"]["engine"] == engine


def test_group_of_one_and_imp_ft_preset(tmp_path):
    """No momentum, no weight decay (the IMP fine-tuning preset), a group of one."""
    cfg = TrainConfig(epochs=2, lr=0.02, momentum=0.0, weight_decay=0.0, batch_size=64)
    mask = magnitude_mask(build(MLP_CFG, FLAT_META, 3), 0.8)
    run_group(MLP_CFG, FLAT_META, [(3, 0, mask)], flat_data(200, 0), flat_data(40, 1), cfg, tmp_path)
    assert_close_states(state(tmp_path / "sep0" / "final.pt"), state(tmp_path / "fused0" / "final.pt"))
    assert_exact_zeros(state(tmp_path / "fused0" / "final.pt"), mask)


def test_nesterov_and_warmup(tmp_path):
    cfg = TrainConfig(epochs=3, lr=0.05, momentum=0.9, weight_decay=5e-4, batch_size=50, nesterov=True,
                      warmup_epochs=1.0)
    run_group(MLP_CFG, FLAT_META, [(0, 1, None), (1, 1, None)], flat_data(230, 0), flat_data(40, 1), cfg, tmp_path)
    for i in range(2):
        assert_close_states(state(tmp_path / f"sep{i}" / "final.pt"), state(tmp_path / f"fused{i}" / "final.pt"))


# ---------------------------------------------------------- conv nets --

@pytest.mark.slow
def test_vgg11_group_with_augmentation_equals_separate_runs(tmp_path):
    cfg_model = {"name": "vgg11", "width": 1}
    cfg = TrainConfig(epochs=1, lr=0.02, momentum=0.9, weight_decay=5e-4, batch_size=16)
    mask = magnitude_mask(build(cfg_model, IMG_META, 0), 0.9)
    run_group(cfg_model, IMG_META, [(0, 5, mask), (1, 6, None)], image_data(32, 0), image_data(20, 1), cfg,
              tmp_path)
    for i in range(2):
        assert_close_states(state(tmp_path / f"sep{i}" / "final.pt"), state(tmp_path / f"fused{i}" / "final.pt"))
    assert_exact_zeros(state(tmp_path / "fused0" / "final.pt"), mask)


def test_resnet20_batchnorm_group_equals_separate_runs(tmp_path):
    """Running statistics and num_batches_tracked stay per run (one run starts from a used checkpoint)."""
    cfg_model = {"name": "resnet20", "width": 1}
    cfg = TrainConfig(epochs=2, lr=0.02, momentum=0.9, weight_decay=5e-4, batch_size=16)
    train, test = image_data(16, 0), image_data(20, 1)
    mask = magnitude_mask(build(cfg_model, IMG_META, 0), 0.9)

    def models():
        a, b = build(cfg_model, IMG_META, 0), build(cfg_model, IMG_META, 1)
        b.bn1.num_batches_tracked.fill_(7)
        return a, b

    sep_models, fused_models = models(), models()
    for i, (m, mk) in enumerate(zip(sep_models, (mask, None))):
        fit(m, train, test, cfg, out_dir=tmp_path / f"sep{i}", mask=mk, data_seed=i, model_cfg=cfg_model,
            data_meta=IMG_META, run_name=f"r{i}", device="cpu", progress="log", save_epochs=[1])
    members = [GroupMember(model=m, out_dir=tmp_path / f"fused{i}", run_name=f"r{i}", data_seed=i, mask=mk)
               for i, (m, mk) in enumerate(zip(fused_models, (mask, None)))]
    fit_fused(members, train, test, cfg, model_cfg=cfg_model, data_meta=IMG_META, device="cpu", progress="log",
              save_epochs=[1])
    for i in range(2):
        # One step (epoch 1 is one batch): equal up to rounding at the tight tolerance.
        assert_close_states(state(tmp_path / f"sep{i}" / "ckpt" / "epoch1.pt"),
                            state(tmp_path / f"fused{i}" / "ckpt" / "epoch1.pt"))
        # BatchNorm ResNets amplify rounding step by step: the trainer itself, fed the same batch in another
        # order, moves weights by ~3e-5 after one step (docs/performance.md); two steps stay well inside 1e-4.
        assert_close_states(state(tmp_path / f"sep{i}" / "final.pt"), state(tmp_path / f"fused{i}" / "final.pt"),
                            rtol=1e-4, atol=1e-4)
    assert int(state(tmp_path / "fused1" / "final.pt")["bn1.num_batches_tracked"]) == 7 + 2
    assert int(state(tmp_path / "fused0" / "final.pt")["bn1.num_batches_tracked"]) == 2
    assert_exact_zeros(state(tmp_path / "fused0" / "final.pt"), mask)


def test_stacked_model_round_trips_every_state(tmp_path):
    for cfg_model, meta in (({"name": "resnet20", "width": 1}, IMG_META), (MLP_CFG, FLAT_META)):
        models = [build(cfg_model, meta, s) for s in range(3)]
        stacked = fused.StackedModel(models[0], [m.state_dict() for m in models], torch.device("cpu"))
        for r, m in enumerate(models):
            assert_close_states(m.state_dict(), stacked.run_state_dict(r), rtol=0, atol=0)


def test_stacked_forward_equals_each_model():
    models = [build({"name": "resnet20", "width": 1}, IMG_META, s).eval() for s in range(2)]
    stacked = fused.StackedModel(models[0], [m.state_dict() for m in models], torch.device("cpu"))
    stacked.module.eval()
    x = torch.randn(2, 4, 3, 32, 32)
    with torch.no_grad():
        out = stacked.logits(x)
        for r, m in enumerate(models):
            assert torch.allclose(out[r], m(x[r]), rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------ data --

@pytest.mark.parametrize("ds, augment", [(flat_data(101, 0), False), (image_data(37, 0), True),
                                         (image_data(37, 0), False)])
def test_stacked_batches_are_the_trainers_batches(ds, augment):
    seeds = [0, 5, 9]
    sb = StackedBatches(ds, 16, seeds, augment, torch.device("cpu"), drop_last=False)
    for epoch in (0, 3):
        got = list(sb.epoch(epoch))
        want = [list(batches(ds, 16, shuffle=True, data_seed=s, epoch=epoch, augment=augment, device="cpu"))
                for s in seeds]
        assert len(got) == len(want[0]) == 7 if len(ds) == 101 else 3
        for j, (x, y) in enumerate(got):
            for r in range(len(seeds)):
                assert torch.equal(x[r], want[r][j][0]) and torch.equal(y[r], want[r][j][1])


# ---------------------------------------------------------------- resume --

def test_resume_after_a_crash_is_bit_identical(tmp_path, monkeypatch, capsys):
    cfg = TrainConfig(epochs=3, lr=0.05, batch_size=32)
    train, test = flat_data(200, 0), flat_data(40, 1)
    mask = magnitude_mask(build(MLP_CFG, FLAT_META, 0), 0.7)

    def members(root):
        return [GroupMember(model=build(MLP_CFG, FLAT_META, s), out_dir=root / f"r{s}", run_name=f"r{s}",
                            data_seed=s, mask=mask if s == 0 else None) for s in range(2)]

    kw = dict(model_cfg=MLP_CFG, data_meta=FLAT_META, device="cpu", progress="log", save_epochs=[1, 3])
    fit_fused(members(tmp_path / "whole"), train, test, cfg, **kw)

    real = fused.evaluate_stacked
    calls = {"n": 0}

    def crash_in_epoch_two(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(fused, "evaluate_stacked", crash_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        fit_fused(members(tmp_path / "killed"), train, test, cfg, **kw)
    scratch = tmp_path / "killed" / "r0" / fused.SCRATCH_NAME
    assert scratch.exists() and not (tmp_path / "killed" / "r0" / "result.json").exists()
    monkeypatch.setattr(fused, "evaluate_stacked", real)
    capsys.readouterr()
    fit_fused(members(tmp_path / "killed"), train, test, cfg, **kw)
    assert "resuming after epoch 1/3" in capsys.readouterr().err
    assert not scratch.exists()
    for s in range(2):
        for name in ("final.pt", "ckpt/epoch1.pt", "ckpt/epoch3.pt"):
            a, b = state(tmp_path / "whole" / f"r{s}" / name), state(tmp_path / "killed" / f"r{s}" / name)
            assert all(torch.equal(a[k], b[k]) for k in a)
        ra = read_csv(tmp_path / "whole" / f"r{s}" / "metrics.csv")
        rb = read_csv(tmp_path / "killed" / f"r{s}" / "metrics.csv")
        drop = ("seconds", "images_per_s")
        assert [{k: v for k, v in r.items() if k not in drop} for r in ra] == \
               [{k: v for k, v in r.items() if k not in drop} for r in rb]


def test_other_arguments_ignore_the_scratch_file(tmp_path, capsys):
    train, test = flat_data(100, 0), flat_data(40, 1)
    members = lambda: [GroupMember(model=build(MLP_CFG, FLAT_META, 0), out_dir=tmp_path / "r0", run_name="r0")]  # noqa: E731
    kw = dict(model_cfg=MLP_CFG, data_meta=FLAT_META, device="cpu", progress="log")
    scratch = tmp_path / "r0" / fused.SCRATCH_NAME
    scratch.parent.mkdir(parents=True)
    scratch.write_bytes(b"not a torch file")
    fit_fused(members(), train, test, TrainConfig(epochs=1, lr=0.05, batch_size=32), **kw)
    assert "ignoring unreadable resume file" in capsys.readouterr().err
    assert (tmp_path / "r0" / "result.json").exists() and not scratch.exists()


# ------------------------------------------------------------ failures --

def test_divergence_stops_the_group_without_outputs(tmp_path):
    cfg = TrainConfig(epochs=2, lr=1e9, momentum=0.9, batch_size=32)
    members = [GroupMember(model=build(MLP_CFG, FLAT_META, s), out_dir=tmp_path / f"r{s}", run_name=f"r{s}")
               for s in range(2)]
    with pytest.raises(TrainingDiverged, match="diverged"):
        fit_fused(members, flat_data(200, 0), flat_data(40, 1), cfg, model_cfg=MLP_CFG, data_meta=FLAT_META,
                  device="cpu", progress="log")
    for s in range(2):
        assert not (tmp_path / f"r{s}" / "result.json").exists() and not (tmp_path / f"r{s}" / "final.pt").exists()


def test_refuses_what_it_cannot_fuse(tmp_path):
    cfg = TrainConfig(epochs=1, lr=0.05, batch_size=32)
    train, test = flat_data(64, 0), flat_data(10, 1)
    kw = dict(model_cfg=MLP_CFG, data_meta=FLAT_META, device="cpu", progress="log")
    wide = {**MLP_CFG, "width": 2}
    with pytest.raises(UserError, match="another architecture"):
        fit_fused([GroupMember(model=build(MLP_CFG, FLAT_META, 0), out_dir=tmp_path / "a", run_name="a"),
                   GroupMember(model=build(wide, FLAT_META, 0), out_dir=tmp_path / "b", run_name="b")],
                  train, test, cfg, **kw)
    with pytest.raises(UserError, match="distinct"):
        fit_fused([GroupMember(model=build(MLP_CFG, FLAT_META, s), out_dir=tmp_path / "a", run_name=str(s))
                   for s in range(2)], train, test, cfg, **kw)
    with pytest.raises(UserError, match="resnet50"):
        fit_fused([GroupMember(model=build(MLP_CFG, FLAT_META, 0), out_dir=tmp_path / "a", run_name="a")],
                  train, test, cfg, **{**kw, "model_cfg": {"name": "resnet50"}})
    with pytest.raises(UserError, match="--engine mlp"):
        fused.choose_engine("mlp", build_model({"name": "resnet20"}, 10, 3), torch.device("cpu"))

    class Odd(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.norm = torch.nn.LayerNorm(4)

    with pytest.raises(UserError, match="LayerNorm"):
        fused.stack_architecture(Odd(), 2)


def test_run_specs():
    spec = parse_run_arg("out_dir=res/lth,init=A/ckpt/epoch5.pt,mask=m.pt,branch=lth,data_seed=3,tag.member=2")
    assert (spec.out_dir, spec.init, spec.mask, spec.branch, spec.data_seed, spec.seed) == \
           ("res/lth", "A/ckpt/epoch5.pt", "m.pt", "lth", 3, None)
    assert spec.tags == {"member": "2"}
    assert parse_run_arg("out_dir=x,seed=4").seed == 4
    for bad, word in (("init=a.pt", "out_dir"), ("out_dir=x,colour=red", "unknown key"), ("out_dir=x,seed=one", "integer"),
                      ("out_dir=x,branch=lth", "init"), ("out_dir=x,branch=best,init=a,mask=b", "branch"),
                      ("out_dir=x,oops", "KEY=VALUE"), ("out_dir=x,out_dir=y", "twice")):
        with pytest.raises(UserError, match=word):
            parse_run_arg(bad)


# ------------------------------------------------- the step vs `sparse` --

def _mnist1d(root: Path, n_train=600, n_test=200) -> Path:
    """A small real MNIST-1D set under the default cache name (fast to generate)."""
    obj = mnist1d.generate(mnist1d.MNIST1DConfig(n_train=n_train, n_test=n_test, seed=0))
    buf = _io.BytesIO()
    torch.save(obj, buf)
    data = buf.getvalue()
    path = mnist1d.cache_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    mnist1d.checksum_path(path).write_text(f"{hashlib.sha256(data).hexdigest()}  {path.name}\n")
    return root


@pytest.fixture(scope="module")
def cell(tmp_path_factory):
    root = tmp_path_factory.mktemp("fused_cell")
    _mnist1d(root / "data")
    model_cfg = {"name": "mlp", "width": 1, "hidden": 16}
    meta = checkpoints.data_meta(dataset_info("mnist1d"))
    for net, seed in (("A", 0), ("B", 1)):
        torch.manual_seed(seed)
        m = build_model(model_cfg, 10, 1, input_size=40)
        checkpoints.save_checkpoint(root / f"{net}.pt", m, model_cfg, meta, 3)
    a = checkpoints.model_from_checkpoint(root / "A.pt")
    mask = magnitude_mask(a, 0.8)
    checkpoints.save_mask(root / "mA.pt", mask, model_cfg, meta, sparsity_report(a, mask, 0.8))
    g = torch.Generator().manual_seed(1)
    p0, p1 = torch.randperm(16, generator=g), torch.randperm(16, generator=g)
    pm = {"hidden.0.weight": mask["hidden.0.weight"][p0], "hidden.1.weight": mask["hidden.1.weight"][p1][:, p0],
          "head.weight": mask["head.weight"][:, p1]}
    checkpoints.save_mask(root / "pimA.pt", pm, model_cfg, meta, sparsity_report(a, pm, 0.8))
    return root


BRANCH_FILES = {"lth": ("A.pt", "mA.pt"), "naive": ("B.pt", "mA.pt"), "permuted": ("B.pt", "pimA.pt")}
COMMON = ["--dataset", "mnist1d", "--preset", "mnist1d_sparse", "--epochs", "2", "--device", "cpu",
          "--progress", "log", "--tag", "experiment=t", "--seed", "4"]


def test_fused_step_equals_three_sparse_steps(cell, capsys):
    data = ["--data-dir", str(cell / "data")]
    for branch, (init, mask) in BRANCH_FILES.items():
        assert cli.main(["sparse", "--init", str(cell / init), "--mask", str(cell / mask), "--branch", branch,
                         *COMMON, *data, "--out-dir", str(cell / "sparse" / branch)]) == 0
    runs = [{"out_dir": str(cell / "fused" / b), "init": str(cell / i), "mask": str(cell / m), "branch": b}
            for b, (i, m) in BRANCH_FILES.items()]
    (cell / "runs.json").write_text(json.dumps(runs[:2]))
    last = runs[2]
    run_arg = f"out_dir={last['out_dir']},init={last['init']},mask={last['mask']},branch=permuted"
    assert cli.main(["fused", "--runs", str(cell / "runs.json"), "--run", run_arg, *COMMON, *data]) == 0
    for branch in BRANCH_FILES:
        a_dir, b_dir = cell / "sparse" / branch, cell / "fused" / branch
        assert sorted(p.name for p in a_dir.iterdir()) == sorted(p.name for p in b_dir.iterdir())
        assert_close_states(state(a_dir / "final.pt"), state(b_dir / "final.pt"))
        ra, rb = (json.loads((d / "result.json").read_text()) for d in (a_dir, b_dir))
        assert rb["tags"] == ra["tags"] == {"experiment": "t", "branch": branch, "k": "3", "sparsity": "0.8"}
        assert rb["run"] == ra["run"] == f"sparse-{branch}-k3"
        assert rb["provenance"]["seeds"] == ra["provenance"]["seeds"]
        assert rb["provenance"]["config"]["init_checkpoint"] == ra["provenance"]["config"]["init_checkpoint"]


def test_fused_step_seeded_dense_runs_and_errors(cell, capsys):
    data = ["--data-dir", str(cell / "data")]
    out = cell / "dense"
    assert cli.main(["fused", "--model", "mlp", "--hidden", "16", "--run", f"out_dir={out / 's0'},seed=0",
                     "--run", f"out_dir={out / 's1'},seed=1,data_seed=7", *COMMON, *data,
                     "--save-epochs", "0,2"]) == 0
    assert cli.main(["train", "--model", "mlp", "--hidden", "16", *COMMON, *data, "--seed", "1", "--data-seed", "7",
                     "--out-dir", str(out / "t1")]) == 0
    assert_close_states(state(out / "t1" / "final.pt"), state(out / "s1" / "final.pt"))
    assert (out / "s0" / "ckpt" / "epoch0.pt").exists() and (out / "s0" / "ckpt" / "epoch2.pt").exists()
    capsys.readouterr()
    assert cli.main(["fused", *COMMON, *data]) == 2
    assert "give the group's runs" in capsys.readouterr().err
    assert cli.main(["fused", "--run", f"out_dir={out / 'x'}", *COMMON, *data]) == 2
    assert "no init checkpoint and no --model" in capsys.readouterr().err
    assert cli.main(["fused", "--model", "mlp", "--width", "2", "--run",
                     f"out_dir={out / 'y'},init={cell / 'A.pt'}", *COMMON, *data]) == 2
    assert "checkpoint" in capsys.readouterr().err


def test_refuses_a_single_class_training_set(tmp_path):
    x = torch.randn(64, 12)
    train = ArrayDataset(FLAT, x, torch.zeros(64, dtype=torch.long))
    with pytest.raises(UserError, match="single class"):
        fit_fused([GroupMember(model=build(MLP_CFG, FLAT_META, 0), out_dir=tmp_path / "a", run_name="a")], train,
                  flat_data(10, 1), TrainConfig(epochs=1, lr=0.05, batch_size=32), model_cfg=MLP_CFG,
                  data_meta=FLAT_META, device="cpu", progress="log")


def test_unwritable_run_directory_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(UserError, match="cannot create directory"):
        fit_fused([GroupMember(model=build(MLP_CFG, FLAT_META, 0), out_dir=blocker / "run", run_name="a")],
                  flat_data(64, 0), flat_data(10, 1), TrainConfig(epochs=1, lr=0.05, batch_size=32),
                  model_cfg=MLP_CFG, data_meta=FLAT_META, device="cpu", progress="log")
