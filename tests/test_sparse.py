"""The three sparse branches: starting weights, kept zeros, validation, CLI."""

import pytest
import torch
from _pruning_data import MODEL, init_checkpoint, make_data, meta

from sparsebasin import checkpoints, io
from sparsebasin.cli import main
from sparsebasin.errors import UserError
from sparsebasin.options import DataOptions, RunOptions
from sparsebasin.pruning import prune_to, sparsity_report
from sparsebasin.training import run_sparse
from sparsebasin.training import resolve_config

CFG = resolve_config("mnist1d_sparse", epochs=2)


def _permute_mlp_mask(mask, p0, p1):
    """pi(m) for the 2-hidden-layer MLP: rows by the layer's group, columns by the previous one."""
    return {
        "hidden.0.weight": mask["hidden.0.weight"][p0],
        "hidden.1.weight": mask["hidden.1.weight"][p1][:, p0],
        "head.weight": mask["head.weight"][:, p1],
    }


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("sparse")
    make_data(root / "data")
    a0 = init_checkpoint(root / "A_k0.pt", seed=0)
    b0 = init_checkpoint(root / "B_k0.pt", seed=1)
    w = checkpoints.load_checkpoint(a0)["state_dict"]
    keys = ["hidden.0.weight", "hidden.1.weight", "head.weight"]
    m_a = prune_to(w, {k: torch.ones_like(w[k], dtype=torch.bool) for k in keys}, 0.8)
    model = checkpoints.model_from_checkpoint(a0)
    checkpoints.save_mask(root / "mA.pt", m_a, MODEL, meta(), sparsity_report(model, m_a, 0.8))
    g = torch.Generator().manual_seed(3)
    pm = _permute_mlp_mask(m_a, torch.randperm(16, generator=g), torch.randperm(16, generator=g))
    checkpoints.save_mask(root / "pimA.pt", pm, MODEL, meta(), sparsity_report(model, pm, 0.8))
    return root


def _run(env, branch, init, mask, out, **kw):
    return run_sparse(init=env / init, mask=env / mask, branch=branch, cfg=CFG, data=DataOptions("mnist1d", env / "data"),
                      out_dir=env / out, save_epochs=[0], run=RunOptions(device="cpu", progress="log"), **kw)


@pytest.fixture(scope="module")
def runs(env):
    return {
        "lth": _run(env, "lth", "A_k0.pt", "mA.pt", "lth"),
        "naive": _run(env, "naive", "B_k0.pt", "mA.pt", "naive"),
        "permuted": _run(env, "permuted", "B_k0.pt", "pimA.pt", "permuted"),
    }


def _sd(path):
    return checkpoints.load_checkpoint(path)["state_dict"]


def _mask(path):
    return checkpoints.load_mask(path)["mask"]


def test_lth_at_k0_is_init_times_mask(env, runs):
    start, init, m = _sd(env / "lth" / "ckpt" / "epoch0.pt"), _sd(env / "A_k0.pt"), _mask(env / "mA.pt")
    for k, v in init.items():
        assert torch.equal(start[k], v * m[k] if k in m else v), k


def test_naive_and_permuted_share_weights_differ_in_masks(env, runs):
    b = _sd(env / "B_k0.pt")
    naive, perm = _sd(env / "naive" / "ckpt" / "epoch0.pt"), _sd(env / "permuted" / "ckpt" / "epoch0.pt")
    m, pm = _mask(env / "mA.pt"), _mask(env / "pimA.pt")
    assert any(not torch.equal(m[k], pm[k]) for k in m)
    for k, v in b.items():
        if k in m:
            both = m[k] & pm[k]
            assert torch.equal(naive[k][both], perm[k][both]) and torch.equal(naive[k][both], v[both])
            assert torch.equal(naive[k], v * m[k]) and torch.equal(perm[k], v * pm[k])
        else:
            assert torch.equal(naive[k], v) and torch.equal(perm[k], v)


def test_runs_keep_exactly_the_masks_zeros(env, runs):
    for branch, mask in (("lth", "mA.pt"), ("naive", "mA.pt"), ("permuted", "pimA.pt")):
        final, m = _sd(env / branch / "final.pt"), _mask(env / mask)
        for k, keep in m.items():
            assert (final[k][~keep] == 0).all() and (final[k][keep] != 0).all(), (branch, k)
        res = io.read_json(env / branch / "result.json")
        assert res["tags"] == {"branch": branch, "k": "0", "sparsity": "0.8"}
        assert res["density"] == pytest.approx(checkpoints.mask_density(m)) and res["epochs"] == 2
        assert (env / branch / "predictions.pt").exists()
        assert res["provenance"]["config"]["mask"] == str(env / mask)


def test_data_seed_changes_only_the_order(env, runs):
    other = _run(env, "lth", "A_k0.pt", "mA.pt", "lth_d7", data_seed=7)
    assert torch.equal(_sd(env / "lth_d7" / "ckpt" / "epoch0.pt")["head.weight"],
                       _sd(env / "lth" / "ckpt" / "epoch0.pt")["head.weight"])
    assert not torch.equal(_sd(env / "lth_d7" / "final.pt")["head.weight"], _sd(env / "lth" / "final.pt")["head.weight"])
    assert other["provenance"]["seeds"]["data"] == 7


def test_mismatched_files_refused(env):
    init_checkpoint(env / "wide.pt", seed=0, model_cfg=MODEL | {"hidden": 32})
    with pytest.raises(UserError, match="describe different models"):
        _run(env, "naive", "wide.pt", "mA.pt", "bad")
    with pytest.raises(UserError, match="--branch 'lottery'"):
        _run(env, "lottery", "A_k0.pt", "mA.pt", "bad")
    with pytest.raises(UserError, match="is a sparse checkpoint"):
        _run(env, "lth", "lth/final.pt", "mA.pt", "bad")
    assert not (env / "bad").exists()


def test_cli(env, runs, capsys):
    argv = ["sparse", "--init", str(env / "B_k0.pt"), "--mask", str(env / "pimA.pt"), "--branch", "permuted",
            "--dataset", "mnist1d", "--data-dir", str(env / "data"), "--preset", "mnist1d_sparse", "--epochs", "2",
            "--device", "cpu", "--progress", "log", "--tag", "seed=0", "--out-dir", str(env / "cli")]
    assert main(argv) == 0
    res = io.read_json(env / "cli" / "result.json")
    assert res["tags"] == {"seed": "0", "branch": "permuted", "k": "0", "sparsity": "0.8"}
    # same files, same settings: identical to the library call
    assert torch.equal(_sd(env / "cli" / "final.pt")["head.weight"], _sd(env / "permuted" / "final.pt")["head.weight"])
    assert main(argv[:3] + ["--mask", str(env / "nope.pt")] + argv[5:]) == 2
    assert "nope.pt does not exist" in capsys.readouterr().err
