"""IMP-FT and IMP with rewinding on a tiny MLP: exact sparsity, nesting, magnitudes, outputs, reruns."""

import os

import shutil

import pytest
import torch
from _pruning_data import MODEL, init_checkpoint, make_data

from sparsebasin import checkpoints, io
from sparsebasin.errors import UserError
from sparsebasin.pruning import kept_count, mask_counts, prune_to
from sparsebasin.options import DataOptions, RunOptions
from sparsebasin.pruning.imp import IMPOptions, run_imp
from sparsebasin.training import resolve_config

FT = resolve_config("mnist1d_imp_ft", epochs=1)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("imp")
    make_data(root / "data")
    dense = init_checkpoint(root / "A.pt", seed=0, epoch=3)
    return root, dense


def _run(env, out, *, dataset="mnist1d", force=False, **kw):
    root, dense = env
    imp = {"rate": 0.3, **{k: kw.pop(k) for k in ("rate", "mode", "rewind", "chain") if k in kw},
           **{k: tuple(kw.pop(k)) for k in ("include", "exclude") if k in kw}}
    args = dict(checkpoint=dense, targets=[0.5, 0.8], out_dir=root / out, data=DataOptions(dataset, root / "data"),
                ft_cfg=FT, imp=IMPOptions(**imp),
                run=RunOptions(device="cpu", progress="log", tags={"seed": "0"}, force=force))
    args.update(kw)
    return run_imp(**args)


@pytest.fixture(scope="module")
def chained(env):
    return _run(env, "chain")


def _state(path):
    return checkpoints.load_checkpoint(path)["state_dict"]


def test_targets_exact_and_outputs_complete(env, chained):
    out = env[0] / "chain"
    for s in ("0.5", "0.8"):
        d = out / f"S{s}"
        mask = checkpoints.load_mask(d / "mask.pt")["mask"]
        kept, total = mask_counts(mask)
        assert kept == kept_count(float(s), total)
        rep = io.read_json(d / "sparsity.json")
        assert rep["requested"] == float(s) and abs(rep["prunable"]["realised"] - float(s)) <= 1 / total
        assert rep["all"]["numel"] > rep["prunable"]["numel"] and rep["provenance"]["config"]["rate"] == 0.3
        sd = _state(d / "model.pt")
        for k, m in mask.items():
            assert (sd[k][~m] == 0).all()
        res = io.read_json(d / "result.json")
        assert res["tags"] == {"seed": "0", "sparsity": s, "branch": "imp"}
        assert res["imp"]["round"] == chained["targets"][s]["round"] and "provenance" in res
        assert io.load_artifact(d / "predictions.pt", "predictions")["logits"].shape == (200, 10)
    rows = chained["rounds"]
    assert [r["round"] for r in rows] == list(range(1, 7)) and all(r["done"] for r in rows)
    assert all((out / r["path"]).exists() and (out / r["run_dir"] / "metrics.csv").exists() for r in rows)
    assert [r["kind"] for r in rows] == ["chain", "branch", "chain", "chain", "chain", "branch"]
    assert chained["targets"]["0.8"]["lineage"] == [1, 3, 4, 5, 6]


def test_nested_and_magnitude_ordered_per_round(env, chained):
    root, dense = env
    out = root / "chain"
    for r in chained["rounds"]:
        if r["parent"] == 0:
            w_parent = _state(dense)
            m_parent = {k: torch.ones_like(v, dtype=torch.bool) for k, v in w_parent.items() if k.endswith("weight")}
        else:
            w_parent = _state(out / f"rounds/round{r['parent']}.pt")
            m_parent = checkpoints.load_mask(out / f"rounds/round{r['parent']}_mask.pt")["mask"]
        m = checkpoints.load_mask(out / r["mask_path"])["mask"]
        assert list(m) == list(m_parent)
        assert all(bool((m[k] <= m_parent[k]).all()) for k in m)  # nested
        kept = torch.cat([w_parent[k][m[k]].abs() for k in m])
        pruned = torch.cat([w_parent[k][m_parent[k] & ~m[k]].abs() for k in m])
        assert kept.min() >= pruned.max()
        assert sum(int(x.sum()) for x in m.values()) == kept_count(r["sparsity"], sum(x.numel() for x in m.values()))


def _tree(d):
    return {p.relative_to(d).as_posix(): (p.stat().st_mtime_ns, p.read_bytes()) for p in d.rglob("*") if p.is_file()}


def test_rerun_is_a_noop_and_other_settings_are_refused_or_forced(env, chained, capsys, monkeypatch):
    out = env[0] / "chain"
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.pt")}
    again = _run(env, "chain")
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.pt")} == before
    assert again["targets"] == chained["targets"]
    assert "already finished" in capsys.readouterr().err

    # a finished IMP asked for with another setting: refused, nothing touched
    other = env[0] / "chain_other"
    shutil.copytree(out, other)
    snap = _tree(other)
    with pytest.raises(UserError, match=r"other settings \(train.lr 0.1 -> 0.777\).*--force"):
        _run(env, "chain_other", ft_cfg=resolve_config(FT, lr=0.777))
    assert _tree(other) == snap

    # --force, killed half-way: every old file is still there
    import sparsebasin.pruning.imp as imp_mod

    real = imp_mod._write_target

    def boom(*a, **k):
        raise RuntimeError("killed")

    monkeypatch.setattr(imp_mod, "_write_target", boom)
    with pytest.raises(RuntimeError):
        _run(env, "chain_other", ft_cfg=resolve_config(FT, lr=0.777), force=True)
    monkeypatch.setattr(imp_mod, "_write_target", real)
    kept = {k: v for k, v in _tree(other).items() if not k.startswith(".staging/")}
    assert kept == snap

    # the forced rerun finishes (resuming the staged rounds) and equals an IMP that never saw the old one
    changed = _run(env, "chain_other", ft_cfg=resolve_config(FT, lr=0.777), force=True)
    assert not (other / ".staging").exists()
    fresh = _run(env, "chain_fresh", ft_cfg=resolve_config(FT, lr=0.777))
    names = sorted(p.name for p in (other / "rounds").glob("round*.pt"))
    assert names == sorted(p.name for p in (env[0] / "chain_fresh" / "rounds").glob("round*.pt"))
    for name in (n for n in names if not n.endswith("_mask.pt")):
        a, b = _state(other / "rounds" / name), _state(env[0] / "chain_fresh" / "rounds" / name)
        assert all(torch.equal(a[k], b[k]) for k in a), name
    assert changed["targets"] == fresh["targets"]


def test_workflow_rerun_after_a_setting_change_starts_over(env, chained, capsys):
    """Snakemake deletes a job's declared outputs (the target files) before rerunning it: the IMP is then
    unfinished, and its rounds from other settings are discarded without --force."""
    out = env[0] / "chain_wf"
    shutil.copytree(env[0] / "chain", out)
    for p in out.glob("S*/*"):
        p.unlink()
    changed = _run(env, "chain_wf", ft_cfg=resolve_config(FT, lr=0.777))
    assert "other settings (train.lr 0.1 -> 0.777)" in capsys.readouterr().err
    assert all((out / "S0.8" / f).exists() for f in ("mask.pt", "model.pt", "result.json"))
    assert changed["config"]["train"]["lr"] == 0.777


def test_deleted_outputs_rebuilt_from_rounds(env, chained):
    # a workflow may delete its declared outputs before rerunning: finished rounds still count
    out = env[0] / "chain"
    mask_before = checkpoints.load_mask(out / "S0.8" / "mask.pt")["mask"]
    rounds_before = {p: p.stat().st_mtime_ns for p in (out / "rounds").glob("*.pt")}
    for f in ("rounds.json", "S0.8/mask.pt", "S0.8/model.pt", "S0.5/sparsity.json"):
        (out / f).unlink()
    again = _run(env, "chain")
    assert {p: p.stat().st_mtime_ns for p in (out / "rounds").glob("*.pt")} == rounds_before
    mask_after = checkpoints.load_mask(out / "S0.8" / "mask.pt")["mask"]
    assert all(torch.equal(mask_before[k], mask_after[k]) for k in mask_before)
    assert (out / "S0.5" / "sparsity.json").exists() and (out / "S0.8" / "model.pt").exists()
    assert [r["test_acc"] for r in again["rounds"]] == [r["test_acc"] for r in chained["rounds"]]


def test_chain_equals_one_run_per_target(env, chained):
    alone = _run(env, "alone", chain=False)
    assert len(alone["rounds"]) == 2 + 5
    for s in ("0.5", "0.8"):
        a = checkpoints.load_mask(env[0] / "chain" / f"S{s}" / "mask.pt")["mask"]
        b = checkpoints.load_mask(env[0] / "alone" / f"S{s}" / "mask.pt")["mask"]
        assert all(torch.equal(a[k], b[k]) for k in a)
        sa, sb = _state(env[0] / "chain" / f"S{s}" / "model.pt"), _state(env[0] / "alone" / f"S{s}" / "model.pt")
        assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_excluded_layers_untouched(env):
    res = _run(env, "excl", targets=[0.9], exclude=["head.*"])
    d = env[0] / "excl" / "S0.9"
    mask = checkpoints.load_mask(d / "mask.pt")["mask"]
    assert list(mask) == ["hidden.0.weight", "hidden.1.weight"]
    kept, total = mask_counts(mask)
    assert kept == kept_count(0.9, total)
    assert (_state(d / "model.pt")["head.weight"] != 0).all()
    rep = io.read_json(d / "sparsity.json")
    assert rep["layers"]["head.weight"] == {"numel": 160, "kept": 160, "sparsity": 0.0, "prunable": False}
    assert res["config"]["keys"] == list(mask)


def test_rewind_mode_resets_survivors(env):
    root, dense = env
    rewind = init_checkpoint(root / "A_k0.pt", seed=5, epoch=0)
    tiny = resolve_config(FT, lr=1e-12)  # training barely moves the weights: we see the rewound start
    res = _run(env, "rewind", targets=[0.3], mode="rewind", rewind=rewind, ft_cfg=tiny)
    assert res["config"]["mode"] == "rewind" and res["config"]["rewind_epoch"] == 0
    m = checkpoints.load_mask(root / "rewind" / "S0.3" / "mask.pt")["mask"]
    w_dense, w_rewind = _state(dense), _state(rewind)
    expect = prune_to(w_dense, {k: torch.ones_like(v, dtype=torch.bool) for k, v in m.items()}, 0.3)
    assert all(torch.equal(m[k], expect[k]) for k in m)  # pruned by the trained weights' magnitudes
    got = _state(root / "rewind" / "S0.3" / "model.pt")
    for k, v in w_rewind.items():
        want = v * m[k] if k in m else v
        torch.testing.assert_close(got[k], want, atol=1e-6, rtol=0)


def test_bad_arguments(env):
    with pytest.raises(UserError, match="--mode rewind needs --rewind"):
        _run(env, "bad", mode="rewind")
    with pytest.raises(UserError, match="only used with --mode rewind"):
        _run(env, "bad", rewind=env[1])
    with pytest.raises(UserError, match="--dataset cifar10"):
        _run(env, "bad", dataset="cifar10")
    with pytest.raises(UserError, match="--prune-exclude 'fc.*'"):
        _run(env, "bad", exclude=["fc.*"])
    other = init_checkpoint(env[0] / "wide.pt", seed=0, model_cfg=MODEL | {"hidden": 32})
    with pytest.raises(UserError, match="describe different models"):
        _run(env, "bad", mode="rewind", rewind=other)
    assert not os.path.exists(env[0] / "bad" / "rounds.json")
