"""Data-parallel training with torch.distributed on CPU (gloo), launched by torchrun as users launch it."""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from datafiles import write_random_mask

from sparsebasin.checkpoints import load_checkpoint
from sparsebasin.io import load_artifact

pytestmark = pytest.mark.slow


def _env():
    env = dict(os.environ)
    env.pop("WORLD_SIZE", None)
    env["OMP_NUM_THREADS"] = "1"
    return env


def _run(procs: int, step: str, *argv, timeout=300, wait=True):
    """``step`` under torchrun with ``procs`` processes; one process runs here (no interpreter and torch
    import per run), as CompletedProcess all the same."""
    if procs == 1 and wait:
        from sparsebasin import cli

        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = cli.main([step, *map(str, argv)])
        return subprocess.CompletedProcess([step], code, "", err.getvalue())
    launcher = [sys.executable, "-m", "sparsebasin"] if procs == 1 else \
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(procs), "-m",
         "sparsebasin"]
    cmd = [*launcher, step, *map(str, argv)]
    if not wait:
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
                                start_new_session=True)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=_env())


def _rel(a: dict, b: dict) -> float:
    keys = [k for k in a if a[k].is_floating_point()]
    diff = math.sqrt(sum(float((a[k] - b[k]).double().pow(2).sum()) for k in keys))
    return diff / math.sqrt(sum(float(a[k].double().pow(2).sum()) for k in keys))


def _state(d):
    return load_checkpoint(d / "final.pt")["state_dict"]


def _mlp(tmp, epochs=3, batch=64, n=1000):
    return ["--dataset", "mnist1d", "--data-dir", tmp / "data", "--train-subset", n, "--epochs", epochs,
            "--batch-size", batch, "--lr", 0.1, "--device", "cpu", "--threads", 1, "--progress", "log"]


def test_two_processes_equal_one_dense_and_masked(tmp_path):
    """batch B over 2 ranks = batch B in one process: same data order, shards, loss weights; masks stay zero."""
    mlp = [*_mlp(tmp_path), "--model", "mlp", "--hidden", 32, "--seed", 1, "--save-epochs", 0]
    for procs in (1, 2):
        res = _run(procs, "train", *mlp, "--out-dir", tmp_path / f"dense{procs}")
        assert res.returncode == 0, res.stderr[-3000:]
    assert _rel(_state(tmp_path / "dense1"), _state(tmp_path / "dense2")) < 1e-4
    one, two = (json.loads((tmp_path / f"dense{p}" / "result.json").read_text()) for p in (1, 2))
    assert abs(one["train_loss"] - two["train_loss"]) < 1e-4 and abs(one["test_acc"] - two["test_acc"]) < 2e-3
    assert two["request"]["processes"] == 2 and "processes" not in one["request"]
    # the test set is evaluated data-parallel: each rank its shard, the logits gathered in one process's order
    p1, p2 = (load_artifact(tmp_path / f"dense{p}" / "predictions.pt", "predictions") for p in (1, 2))
    assert torch.equal(p1["labels"], p2["labels"]) and torch.allclose(p1["logits"], p2["logits"], atol=1e-3)
    assert sorted(p.name for p in (tmp_path / "dense2").rglob("*")) == \
        sorted(p.name for p in (tmp_path / "dense1").rglob("*"))  # rank 1 wrote nothing of its own
    assert "distributed: 2 processes, backend gloo (CPU: NCCL unavailable)" in res.stderr

    init = tmp_path / "dense1" / "ckpt" / "epoch0.pt"
    mask = write_random_mask(init, tmp_path / "mask.pt", keep=0.3)
    sparse = [*_mlp(tmp_path, epochs=2), "--init", init, "--mask", tmp_path / "mask.pt", "--branch", "lth"]
    for procs in (1, 2):
        res = _run(procs, "sparse", *sparse, "--out-dir", tmp_path / f"sparse{procs}")
        assert res.returncode == 0, res.stderr[-3000:]
    a, b = _state(tmp_path / "sparse1"), _state(tmp_path / "sparse2")
    assert _rel(a, b) < 1e-4
    assert all(int((b[k][~m] != 0).sum()) == 0 for k, m in mask.items())


def test_two_process_resnet_batchnorm_match_and_interpolate(tmp_path):
    """ResNet20 with BatchNorm: by default each rank normalises its own shard (the paper's DDP script,
    torchvision's recipe), so the run is close to, not equal to, one process; with --sync-bn it is one
    process's run up to summation order. The crops are one process's either way. Matching and interpolation
    (BN reset, REPAIR) on 2 processes give one process's permutation and curves: the statistics are
    all-reduced and BatchNorm in train mode normalises over the global batch."""
    from sparsebasin.data import cifar

    cifar.write_synthetic("cifar10", tmp_path / "data", 128, 32, seed=0)
    args = ["--dataset", "cifar10", "--data-dir", tmp_path / "data", "--model", "resnet20", "--width", 1,
            "--epochs", 1, "--batch-size", 32, "--lr", 0.05, "--device", "cpu", "--threads", 1, "--progress", "log",
            "--precision", "fp32"]
    for procs, name, extra in ((1, "one", []), (2, "per_rank", []), (2, "sync", ["--sync-bn"])):
        res = _run(procs, "train", *args, *extra, "--out-dir", tmp_path / name)
        assert res.returncode == 0, res.stderr[-3000:]
    one = _state(tmp_path / "one")
    per_rank, sync = _rel(one, _state(tmp_path / "per_rank")), _rel(one, _state(tmp_path / "sync"))
    print(f"rel L2 to one process: per-rank BN {per_rank:.2e}, --sync-bn {sync:.2e}")
    assert 0 < per_rank < 0.05, per_rank  # per-rank statistics change the gradients a little, not the run
    # the one-process run is not exact either: torch's float32 CPU BatchNorm backward is ~5e-3 off float64 on
    # conv1's gradient where sparsebasin.syncbn's is ~2e-6 (measured), so --sync-bn lands ~1e-4 away, not 1e-7
    assert sync < per_rank / 5, (sync, per_rank)
    request = json.loads((tmp_path / "sync" / "result.json").read_text())["request"]
    assert request["sync_bn"] is True and "sync_bn" not in json.loads((tmp_path / "per_rank" / "result.json")
                                                                       .read_text())["request"]

    res = _run(1, "train", *args, "--seed", 1, "--out-dir", tmp_path / "b")
    assert res.returncode == 0, res.stderr[-3000:]
    data = ["--dataset", "cifar10", "--data-dir", tmp_path / "data", "--device", "cpu", "--threads", 1]
    a, b = tmp_path / "one" / "final.pt", tmp_path / "b" / "final.pt"
    for procs in (1, 2):  # batches of 30: uneven last batches, shards of 15 and 1
        res = _run(procs, "match", "--a", a, "--b", b, *data, "--batches", 3, "--batch-size", 30,
                   "--out", tmp_path / f"perm{procs}.pt", "--summary", tmp_path / f"perm{procs}.json")
        assert res.returncode == 0, res.stderr[-3000:]
        res = _run(procs, "interpolate", "--a", a, "--b", b, "--permutation", tmp_path / "perm1.pt", *data,
                   "--alphas", 3, "--modes", "plain,bn_reset,repair,repair_block", "--batch-size", 30,
                   "--reset-batches", 2, "--out", tmp_path / f"lmc{procs}.csv", "--barriers", tmp_path / f"bar{procs}.json")
        assert res.returncode == 0, res.stderr[-3000:]
    perms = [load_artifact(tmp_path / f"perm{p}.pt", "permutation")["perm"] for p in (1, 2)]
    assert all(torch.equal(perms[0][g], perms[1][g]) for g in perms[0])
    s1, s2 = (json.loads((tmp_path / f"perm{p}.json").read_text()) for p in (1, 2))
    assert s1["examples"] == s2["examples"] == 90 and abs(s1["mean_correlation"] - s2["mean_correlation"]) < 1e-9
    import csv

    rows = [list(csv.DictReader((tmp_path / f"lmc{p}.csv").open())) for p in (1, 2)]
    assert len(rows[0]) == len(rows[1]) == 3 * 4 * 2 * 2
    for r1, r2 in zip(*rows):
        assert (r1["alpha"], r1["mode"], r1["permuted"], r1["split"]) == (r2["alpha"], r2["mode"], r2["permuted"], r2["split"])
        assert abs(float(r1["loss"]) - float(r2["loss"])) < 1e-4 and abs(float(r1["acc"]) - float(r2["acc"])) < 0.035, (r1, r2)  # one example at most
    # no point log left, rank 1 wrote nothing of its own
    assert sorted(p.name.replace("2", "1") for p in tmp_path.glob("*lmc2*")) == sorted(p.name for p in tmp_path.glob("*lmc1*"))


def _kill_a_rank_when(proc: subprocess.Popen, path) -> None:
    """SIGKILL rank 1 of a 2-process torchrun once ``path`` exists; the other rank must not hang."""
    deadline = time.time() + 120
    while not path.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "finished before it could be interrupted"
    workers = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
    assert len(workers) == 2, workers
    os.kill(int(workers[-1]), signal.SIGKILL)  # one rank dies
    t0 = time.time()
    proc.communicate(timeout=120)
    assert proc.returncode != 0 and time.time() - t0 < 60  # the other rank does not hang


def _imp_files(d):
    """Every mask and weight tensor IMP wrote under ``d``, and its predictions, by relative path."""
    from sparsebasin import io

    out = {}
    for f in sorted(d.rglob("*.pt")):
        kind = {"mask.pt": "mask", "predictions.pt": "predictions"}.get(f.name, "mask" if f.name.endswith("_mask.pt")
                                                                         else "checkpoint")
        obj = io.load_artifact(f, kind)
        out[str(f.relative_to(d))] = obj.get("mask") or obj.get("state_dict") or obj.get("logits")
    return out


def test_two_process_imp_equals_one_and_a_killed_rank_resumes_identically(tmp_path):
    """IMP-FT rounds data-parallel: every rank prunes the same files to the same mask and fine-tunes its shard;
    rank 0 writes. 2 processes = 1 (masks count-exact, weights within summation order). A rank killed in the
    middle of round 2's fine-tuning stops the other within a bounded time; the rerun resumes that fine-tuning
    from its epoch and ends bit-identical to an uninterrupted 2-process IMP (train and sparse share the trainer)."""
    mlp = [*_mlp(tmp_path, epochs=2, batch=32, n=1000), "--model", "mlp", "--hidden", 32, "--seed", 2]
    res = _run(1, "train", *mlp, "--out-dir", tmp_path / "dense")
    assert res.returncode == 0, res.stderr[-3000:]
    imp = ["--checkpoint", tmp_path / "dense" / "final.pt", "--targets", "0.5,0.75", "--rate", 0.5,
           "--dataset", "mnist1d", "--data-dir", tmp_path / "data", "--train-subset", 1000, "--ft-epochs", 4,
           "--ft-batch-size", 32, "--ft-lr", 0.05, "--device", "cpu", "--threads", 1, "--progress", "log"]
    for procs, name in ((1, "one"), (2, "two")):
        res = _run(procs, "prune", *imp, "--out-dir", tmp_path / name)
        assert res.returncode == 0, res.stderr[-3000:]
    one, two = _imp_files(tmp_path / "one"), _imp_files(tmp_path / "two")
    assert sorted(one) == sorted(two) and any("round3" in k for k in two)  # rank 1 wrote nothing of its own
    for key in one:
        if key.endswith("mask.pt"):
            for k, m in two[key].items():
                assert int(m.sum()) == int(one[key][k].sum()), (key, k)  # count-exact on every rank
                assert float((m != one[key][k]).double().mean()) <= 1e-3, (key, k)
        elif "predictions" not in key:
            assert _rel(one[key], two[key]) < 1e-4, key
    final = two["S0.75/mask.pt"]
    assert all(int((two["S0.75/model.pt"][k][~m] != 0).sum()) == 0 for k, m in final.items())

    proc = _run(2, "prune", *imp, "--out-dir", tmp_path / "cut", wait=False)
    _kill_a_rank_when(proc, tmp_path / "cut" / "rounds" / "round2" / ".resume.pt")
    assert not (tmp_path / "cut" / "S0.75").exists()
    res = _run(2, "prune", *imp, "--out-dir", tmp_path / "cut")
    assert res.returncode == 0 and "resuming after epoch" in res.stderr, res.stderr[-3000:]
    cut = _imp_files(tmp_path / "cut")
    assert sorted(cut) == sorted(two)
    for key, value in two.items():
        value = value if isinstance(value, dict) else {"": value}
        other = cut[key] if isinstance(cut[key], dict) else {"": cut[key]}
        assert all(torch.equal(value[k], other[k]) for k in value), key


def test_bad_input_under_torchrun_is_one_line_before_any_work(tmp_path):
    res = _run(2, "train", *_mlp(tmp_path, batch=65), "--model", "mlp", "--out-dir", tmp_path / "odd")
    assert res.returncode != 0
    assert "error: batch size 65 is the global batch and must be divisible by the 2 processes" in res.stderr
    assert not (tmp_path / "odd").exists()


def test_steps_that_are_not_data_parallel_refuse_torchrun(tmp_path, monkeypatch, capsys):
    """fused, permute (every step outside distributed.STEPS): one line before any work (checked before the
    process group: no launch needed)."""
    from sparsebasin import cli, distributed

    monkeypatch.setenv("WORLD_SIZE", "2")
    cases = {"fused": ["--dataset", "mnist1d", "--model", "mlp", "--epochs", 1, "--run", f"out_dir={tmp_path / 'f'}"],
             "permute": ["--permutation", tmp_path / "p.pt", "--input", tmp_path / "m.pt", "--out", tmp_path / "o.pt"]}
    for step, argv in cases.items():
        assert step not in distributed.STEPS
        assert cli.main([step, *map(str, argv)]) == 2, step
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"{step} runs in one process: launch it without torchrun" in err[0], (step, err)
        assert "(train, prune, sparse, match, interpolate and plane are the data-parallel steps)" in err[0]
    assert not any(tmp_path.iterdir())
