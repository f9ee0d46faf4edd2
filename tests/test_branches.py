"""Branches as records: the table every layer reads, and the two control branches (random, signs)."""

from __future__ import annotations

import re

import pytest
import torch
from _pruning_data import MODEL, init_checkpoint, make_data, meta

from sparsebasin import branches, checkpoints, io
from sparsebasin.analysis import names, style
from sparsebasin.cli import main
from sparsebasin.options import DataOptions, RunOptions
from sparsebasin.plan import paths
from sparsebasin.pruning import prune_to, sparsity_report
from sparsebasin.training import resolve_config, run_sparse
from sparsebasin.training.runs import fused_run, parse_run_arg

CFG = resolve_config("mnist1d_sparse", epochs=1)
KEYS = ["hidden.0.weight", "hidden.1.weight", "head.weight"]


# ------------------------------------------------------------------ the table --

def test_every_layer_reads_the_table():
    for b in branches.TABLE:
        assert names.branch(b.name) == b.label
        assert style.branch(b.name) == b.style
        assert b.mask in branches.MASKS and b.weights in branches.WEIGHTS
        assert (b.rewind in ("A", "B")) == b.sparse
    assert branches.PAPER_BRANCHES == ("lth", "naive", "permuted")
    assert {"random", "signs"} <= set(branches.SPARSE_BRANCHES)
    for name in branches.SPARSE_BRANCHES:  # every branch has run directories the rules accept
        path = f"runs/mnist1d-mlp-w1/d0123abcd/seed0/sparse-89abcdef/S0.9/k4/{name}"
        assert paths.matches("sparse", path)


def test_unknown_branch_is_one_line():
    with pytest.raises(Exception, match=r"branch 'lottery' is not one of lth, naive, permuted, random, signs, lth_random"):
        branches.get("lottery")


def test_shuffled_mask_keeps_per_layer_density_and_depends_on_the_seed():
    g = torch.Generator().manual_seed(0)
    mask = {"a": torch.rand(30, 20, generator=g) < 0.2, "b": torch.rand(50, generator=g) < 0.5}
    one, again, other = (branches.shuffled_mask(mask, s) for s in (7, 7, 8))
    for k in mask:
        assert int(one[k].sum()) == int(mask[k].sum()) and one[k].shape == mask[k].shape
        assert torch.equal(one[k], again[k])
    assert any(not torch.equal(one[k], mask[k]) for k in mask)
    assert any(not torch.equal(one[k], other[k]) for k in mask)


def test_signs_applied_takes_magnitudes_of_one_and_signs_of_other():
    b = {"w": torch.tensor([1.0, -2.0, 3.0, -4.0]), "bias": torch.tensor([5.0])}
    a = {"w": torch.tensor([-0.1, -0.2, 0.0, 0.4]), "bias": torch.tensor([-1.0])}
    out = branches.signs_applied(b, a, ["w"])
    assert out["w"].tolist() == [-1.0, -2.0, 3.0, 4.0]  # +0 counts as +
    assert out["bias"] is b["bias"]  # only the masked tensors change


# ------------------------------------------------------------------- the runs --

@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("branches")
    make_data(root / "data")
    a0 = init_checkpoint(root / "A_k0.pt", seed=0)
    init_checkpoint(root / "B_k0.pt", seed=1)
    w = checkpoints.load_checkpoint(a0)["state_dict"]
    m_a = prune_to(w, {k: torch.ones_like(w[k], dtype=torch.bool) for k in KEYS}, 0.8)
    model = checkpoints.model_from_checkpoint(a0)
    checkpoints.save_mask(root / "mA.pt", m_a, MODEL, meta(), sparsity_report(model, m_a, 0.8))
    return root


def _run(env, branch, out, **kw):
    init = env / ("A_k0.pt" if branches.get(branch).rewind == "A" else "B_k0.pt")
    return run_sparse(init=init, mask=env / "mA.pt", branch=branch, cfg=CFG,
                      data=DataOptions("mnist1d", env / "data"), out_dir=env / out, save_epochs=[0],
                      run=RunOptions(device="cpu", progress="log"), seed=5, **kw)


def _sd(path):
    return checkpoints.load_checkpoint(path)["state_dict"]


def test_random_branch_shuffles_m_a_within_each_layer_under_a_recorded_seed(env):
    _run(env, "random", "random")
    start, m_a, b = _sd(env / "random/ckpt/epoch0.pt"), checkpoints.load_mask(env / "mA.pt")["mask"], _sd(env / "B_k0.pt")
    used = {k: start[k] != 0 for k in KEYS}
    for k in KEYS:
        assert int(used[k].sum()) == int(m_a[k].sum())  # same per-layer density
        assert torch.equal(start[k][used[k]], b[k][used[k]])  # B's rewind weights
    assert any(not torch.equal(used[k], m_a[k]) for k in KEYS)
    rec = io.read_json(env / "random/result.json")
    assert rec["tags"]["branch"] == "random"
    assert rec["provenance"]["config"]["branch"] == {"name": "random", "rewind": "B", "mask": "shuffled m_A",
                                                    "weights": "rewind", "mask_seed": 5}
    shuffled = branches.shuffled_mask(m_a, 5)
    assert all(torch.equal(used[k], shuffled[k]) for k in KEYS)  # the recorded seed gives back the mask


def test_signs_branch_takes_a_signs_and_b_magnitudes_under_m_a(env):
    _run(env, "signs", "signs", signs_from=env / "A_k0.pt")
    start, m_a = _sd(env / "signs/ckpt/epoch0.pt"), checkpoints.load_mask(env / "mA.pt")["mask"]
    a, b = _sd(env / "A_k0.pt"), _sd(env / "B_k0.pt")
    for k, v in b.items():
        if k in m_a:
            want = torch.copysign(v.abs(), a[k]) * m_a[k]
            assert torch.equal(start[k], want), k
        else:
            assert torch.equal(start[k], v), k  # biases stay B's
    rec = io.read_json(env / "signs/result.json")
    assert rec["provenance"]["config"]["branch"]["signs_from"] == str(env / "A_k0.pt")


def test_signs_branch_refuses_without_or_with_a_wrong_signs_checkpoint(env, capsys):
    common = ["sparse", "--init", str(env / "B_k0.pt"), "--mask", str(env / "mA.pt"), "--dataset", "mnist1d",
              "--data-dir", str(env / "data"), "--preset", "mnist1d_sparse", "--epochs", "1", "--device", "cpu"]
    assert main([*common, "--branch", "signs", "--out-dir", str(env / "s1")]) == 2
    assert "needs --signs-from" in capsys.readouterr().err
    assert main([*common, "--branch", "naive", "--signs-from", str(env / "A_k0.pt"), "--out-dir", str(env / "s2")]) == 2
    assert "--signs-from is for the signs branch" in capsys.readouterr().err
    later = env / "A_k1.pt"
    ckpt = checkpoints.load_checkpoint(env / "A_k0.pt")
    checkpoints.save_checkpoint(later, ckpt["state_dict"], ckpt["model"], ckpt["data"], epoch=1)
    assert main([*common, "--branch", "signs", "--signs-from", str(later), "--out-dir", str(env / "s3")]) == 2
    assert "at the same rewind point" in capsys.readouterr().err
    assert not any((env / d).exists() for d in ("s1", "s2", "s3"))


def test_fused_members_apply_the_branch_transforms(env):
    specs = [parse_run_arg(f"out_dir={env / 'fz_random'},init={env / 'B_k0.pt'},mask={env / 'mA.pt'},branch=random,"
                           "seed=5"),
             parse_run_arg(f"out_dir={env / 'fz_signs'},init={env / 'B_k0.pt'},mask={env / 'mA.pt'},branch=signs,"
                           f"signs_from={env / 'A_k0.pt'},seed=5")]
    fused_run(runs=specs, model_cfg=None, data=DataOptions("mnist1d", env / "data"), cfg=CFG, save_epochs=[0],
              run=RunOptions(device="cpu", progress="log"))
    for name in ("random", "signs"):
        if not (env / name / "ckpt/epoch0.pt").exists():
            _run(env, name, name, **({"signs_from": env / "A_k0.pt"} if name == "signs" else {}))
        fused_start, alone = _sd(env / f"fz_{name}/ckpt/epoch0.pt"), _sd(env / f"{name}/ckpt/epoch0.pt")
        for k in KEYS:
            assert torch.equal(fused_start[k], alone[k]), (name, k)


# -------------------------------------------------------------------- the plan --

def test_sweep_branches_switch(tmp_path):
    import yaml
    from workflow_plan import REPO, plan_of as plan_for

    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    cell = cfg["experiments"]["mnist1d"]["cells"][0]
    cell["sweep"].pop("branches", None)  # a sweep that lists none runs the paper's
    default = plan_for(cfg)
    assert {j.spec["branch"] for j in default.jobs["sparse"].values()} == {"lth", "naive", "permuted"}
    cell["sweep"]["branches"] = list(reversed(branches.SPARSE_BRANCHES))
    plan = plan_for(cfg)
    rows = list(plan.jobs["sparse"].values())
    assert {j.spec["branch"] for j in rows} == set(branches.SPARSE_BRANCHES)
    for job in rows:
        args = plan.args(job)
        b = branches.get(job.spec["branch"])
        assert ("--signs-from" in args) == b.needs_signs
        assert ("--mask-permutation" in args) == b.needs_permutation
        assert re.search(r"/dense/B/", job.spec["init"]) if b.rewind == "B" else "/dense/A/" in job.spec["init"]
        if b.needs_signs:  # A's checkpoint at the same k as B's init
            assert job.spec["signs"] == job.spec["init"].replace("/dense/B/", "/dense/A/")
    # the paper's branches keep their directories when controls are added
    assert set(default.jobs["sparse"]) <= set(plan.jobs["sparse"])
    cell["sweep"]["branches"] = ["lth", "lottery"]
    with pytest.raises(Exception, match=r"sweep.branches lists 'lottery'"):
        plan_for(cfg)


def test_lth_random_is_one_record_a_s_init_under_a_shuffled_mask(env):
    """Added as one record of sparsebasin.branches and this test: A's rewind weights, m_A shuffled per layer."""
    _run(env, "lth_random", "lth_random")
    start, m_a, a = _sd(env / "lth_random/ckpt/epoch0.pt"), checkpoints.load_mask(env / "mA.pt")["mask"], \
        _sd(env / "A_k0.pt")
    shuffled = branches.shuffled_mask(m_a, 5)
    for k in KEYS:
        assert torch.equal(start[k], a[k] * shuffled[k])
    assert io.read_json(env / "lth_random/result.json")["tags"]["branch"] == "lth_random"
