"""Loading a file never runs code (issue: safe loading).

A pickle whose ``__reduce__`` creates a marker file is planted where every
step reads a ``.pt`` (as an artifact with the right format tag inside a torch
zip file, and as a raw pickle), as a run's ``.resume.pt``, as the fused
group's scratch file, as a finished IMP round, as a CIFAR-10 batch and as the
MNIST-1D cache (with a matching checksum). Each time: the marker is never
created, the step exits 2 with one line naming the file and saying the
content is unsafe, and the planted file is left in place (the evidence).
"""

from __future__ import annotations

import hashlib
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from relutil import error_lines

from sparsebasin import checkpoints, cli
from sparsebasin.data import mnist1d
from sparsebasin.io import FORMATS
from sparsebasin.symmetry.permfile import save_permutation
from sparsebasin.symmetry.spec import spec_from_meta


class Payload:
    """Unpickling this object creates ``marker``: what an attacker's file would do."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


def plant_artifact(path: Path, kind: str, marker: Path, raw: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    obj = {"format": FORMATS[kind], "model": {"name": "mlp", "width": 1}, "evil": Payload(marker)}
    if raw:
        path.write_bytes(pickle.dumps(obj))
    else:
        torch.save(obj, path)
    return path


class W:
    """A workspace with valid inputs from the reference runs."""

    def __init__(self, tmp: Path, refs):
        self.tmp, self.refs, self.data = tmp, refs, refs.data
        self.marker = tmp / "MARKER"
        self.ckpt = refs.dense / "final.pt"
        self.init = refs.init
        self.mask = refs.mask
        self.pred = refs.dense / "predictions.pt"
        ck = checkpoints.load_checkpoint(self.ckpt)
        _, spec = spec_from_meta(ck["model"], ck["data"])
        self.perm = tmp / "perm.pt"
        save_permutation(self.perm, {g: torch.arange(n) for g, n in spec.sizes.items()}, ck["model"], ck["data"],
                         {"method": "test"})

    def bad(self, kind: str, raw: bool = False) -> Path:
        return plant_artifact(self.tmp / f"evil_{kind}{'_raw' if raw else ''}.pt", kind, self.marker, raw)

    def common(self, data: Path | None = None) -> list[str]:
        return ["--dataset", "mnist1d", "--data-dir", str(data or self.data), "--device", "cpu", "--threads", "1"]

    def train(self, *extra, out: Path | None = None, data: Path | None = None) -> list[str]:
        return ["train", *self.common(data), "--model", "mlp", "--hidden", "32", "--preset", "mnist1d_dense",
                "--epochs", "1", "--batch-size", "64", "--progress", "log", "--out-dir", str(out or self.tmp / "out"),
                *extra]

    def sparse(self, init: Path, mask: Path, out: Path | None = None) -> list[str]:
        return ["sparse", "--init", str(init), "--mask", str(mask), "--branch", "lth", *self.common(),
                "--preset", "mnist1d_sparse", "--epochs", "1", "--batch-size", "64", "--progress", "log",
                "--out-dir", str(out or self.tmp / "out")]

    def prune(self, checkpoint: Path, out: Path | None = None, *extra) -> list[str]:
        return ["prune", "--checkpoint", str(checkpoint), "--targets", "0.5", "--rate", "0.5", "--ft-preset",
                "mnist1d_imp_ft", "--ft-epochs", "1", *self.common(), "--progress", "log",
                "--out-dir", str(out or self.tmp / "prune"), *extra]

    def permute(self, perm: Path, inp: Path) -> list[str]:
        return ["permute", "--permutation", str(perm), "--input", str(inp), "--out", str(self.tmp / "pm.pt")]

    def match(self, a: Path, b: Path) -> list[str]:
        return ["match", "--a", str(a), "--b", str(b), *self.common(), "--batches", "1", "--batch-size", "64",
                "--out", str(self.tmp / "p.pt"), "--summary", str(self.tmp / "p.json")]

    def interpolate(self, a: Path, b: Path, perm: Path | None = None) -> list[str]:
        extra = ["--permutation", str(perm)] if perm else []
        return ["interpolate", "--a", str(a), "--b", str(b), *extra, *self.common(), "--alphas", "2",
                "--modes", "plain", "--batch-size", "100", "--reset-batches", "1", "--eval-batches", "1",
                "--out", str(self.tmp / "c.csv"), "--barriers", str(self.tmp / "b.json")]

    def plane(self, origin: Path, p1: Path, p2: Path, perm: Path | None = None) -> list[str]:
        extra = ["--p2-permutation", str(perm)] if perm else []
        return ["plane", "--origin", str(origin), "--p1", str(p1), "--p2", str(p2), *extra, *self.common(),
                "--grid", "2", "--batch-size", "100", "--reset-batches", "1", "--eval-batches", "1",
                "--out", str(self.tmp / "plane.csv")]

    def fused(self, init: Path, mask: Path) -> list[str]:
        run = f"out_dir={self.tmp / 'f0'},init={init},mask={mask},branch=lth,seed=0"
        return ["fused", "--run", run, *self.common(), "--preset", "mnist1d_sparse", "--epochs", "1",
                "--batch-size", "64", "--progress", "log"]


# name -> (argv builder, which planted file the error must name)
def _cases():
    cases = {}

    def add(name, fn):
        cases[name] = fn

    for raw in (False, True):
        r = "_raw" if raw else ""
        add(f"train_init{r}", lambda w, raw=raw: (w.train("--init", str(p := w.bad("checkpoint", raw))), p))
        add(f"train_mask{r}", lambda w, raw=raw: (w.train("--mask", str(p := w.bad("mask", raw))), p))
        add(f"sparse_init{r}", lambda w, raw=raw: (w.sparse(p := w.bad("checkpoint", raw), w.mask), p))
        add(f"sparse_mask{r}", lambda w, raw=raw: (w.sparse(w.init, p := w.bad("mask", raw)), p))
        add(f"prune_checkpoint{r}", lambda w, raw=raw: (w.prune(p := w.bad("checkpoint", raw)), p))
        add(f"permute_permutation{r}", lambda w, raw=raw: (w.permute(p := w.bad("permutation", raw), w.mask), p))
        add(f"permute_input{r}", lambda w, raw=raw: (w.permute(w.perm, p := w.bad("mask", raw)), p))
    add("prune_rewind", lambda w: (w.prune(w.ckpt, None, "--mode", "rewind", "--rewind",
                                           str(p := w.bad("checkpoint"))), p))
    add("match_a", lambda w: (w.match(p := w.bad("checkpoint"), w.ckpt), p))
    add("match_b", lambda w: (w.match(w.ckpt, p := w.bad("checkpoint")), p))
    add("interpolate_a", lambda w: (w.interpolate(p := w.bad("checkpoint"), w.ckpt), p))
    add("interpolate_b", lambda w: (w.interpolate(w.ckpt, p := w.bad("checkpoint")), p))
    add("interpolate_permutation", lambda w: (w.interpolate(w.ckpt, w.init, p := w.bad("permutation")), p))
    add("plane_origin", lambda w: (w.plane(p := w.bad("checkpoint"), w.ckpt, w.init), p))
    add("plane_p2", lambda w: (w.plane(w.ckpt, w.init, p := w.bad("checkpoint")), p))
    add("plane_permutation", lambda w: (w.plane(w.ckpt, w.init, w.refs.dense / "ckpt" / "epoch4.pt",
                                                p := w.bad("permutation")), p))
    add("ensemble", lambda w: (["ensemble", "--predictions", str(w.pred), str(p := w.bad("predictions")),
                                "--group", "g", "--out", str(w.tmp / "e.json")], p))
    add("fused_init", lambda w: (w.fused(p := w.bad("checkpoint"), w.mask), p))
    add("fused_mask", lambda w: (w.fused(w.init, p := w.bad("mask")), p))

    def resume_in(step):
        def build(w):
            out = w.tmp / "out"
            p = plant_artifact(out / ".resume.pt", "resume", w.marker)
            return (w.train(out=out) if step == "train" else w.sparse(w.init, w.mask, out=out)), p
        return build

    add("planted_resume_train", resume_in("train"))
    add("planted_resume_sparse", resume_in("sparse"))

    def fused_scratch(w):
        p = plant_artifact(w.tmp / "f0" / ".fused.resume.pt", "resume", w.marker)
        return w.fused(w.init, w.mask), p

    add("planted_fused_scratch", fused_scratch)

    def imp_round(w):
        out = w.tmp / "prune"
        p = plant_artifact(out / "rounds" / "round1_mask.pt", "mask", w.marker)
        plant_artifact(out / "rounds" / "round1.pt", "checkpoint", w.marker)
        return w.prune(w.ckpt, out), p

    add("planted_imp_round", imp_round)

    def imp_round_resume(w):
        out = w.tmp / "prune"
        p = plant_artifact(out / "rounds" / "round1" / ".resume.pt", "resume", w.marker)
        return w.prune(w.ckpt, out), p

    add("planted_imp_round_resume", imp_round_resume)

    def mnist_cache(w):
        data = w.tmp / "data"
        shutil.copytree(w.data, data)
        cache = mnist1d.cache_path(data)
        cache.write_bytes(pickle.dumps({"format": mnist1d.FORMAT, "evil": Payload(w.marker)}))
        digest = hashlib.sha256(cache.read_bytes()).hexdigest()
        mnist1d.checksum_path(cache).write_text(f"{digest}  {cache.name}\n")
        return w.train(data=data), cache

    add("planted_mnist1d_cache", mnist_cache)
    return cases


CASES = _cases()


def _cifar_root(w: W) -> tuple[Path, Path]:
    from datafiles import write_cifar10

    root = w.tmp / "cifar"
    write_cifar10(root)
    batch = root / "cifar-10-batches-py" / "data_batch_1"
    batch.write_bytes(pickle.dumps({b"data": Payload(w.marker), b"labels": [0]}, protocol=2))
    return root, batch


def _run(argv, capsys) -> tuple[int, str]:
    try:
        rc = cli.main(list(argv))
    except SystemExit as exc:
        rc = exc.code if isinstance(exc.code, int) else 1
    return rc, capsys.readouterr().err


def _check(rc, err, planted: Path, marker: Path):
    assert not marker.exists(), "the planted pickle ran code"
    assert rc == 2, f"exit {rc}\n{err[-2000:]}"
    assert "Traceback" not in err, err[-2000:]
    lines = error_lines(err)
    assert len(lines) == 1, lines
    assert str(planted) in lines[0] and "unsafe" in lines[0], lines[0]
    assert planted.exists(), "the planted file must stay (it is the evidence)"


@pytest.mark.parametrize("name", sorted(CASES))
def test_planted_pickle_never_runs(name, refs, tmp_path, capsys):
    w = W(tmp_path, refs)
    argv, planted = CASES[name](w)
    rc, err = _run(argv, capsys)
    _check(rc, err, planted, w.marker)


@pytest.mark.parametrize("step", ["train", "prepare"])
def test_planted_cifar_batch_never_runs(step, refs, tmp_path, capsys):
    w = W(tmp_path, refs)
    root, batch = _cifar_root(w)
    if step == "train":
        argv = ["train", "--dataset", "cifar10", "--data-dir", str(root), "--model", "resnet20", "--epochs", "1",
                "--device", "cpu", "--threads", "1", "--out-dir", str(tmp_path / "out")]
    else:
        argv = ["prepare", "--dataset", "cifar10", "--data-dir", str(root)]
    rc, err = _run(argv, capsys)
    _check(rc, err, batch, w.marker)


def test_unsafe_load_is_refused_by_the_library(tmp_path):
    """The same through the library call every step uses."""
    from sparsebasin import io
    from sparsebasin.errors import UnsafeFile

    marker = tmp_path / "MARKER"
    p = plant_artifact(tmp_path / "x.pt", "checkpoint", marker)
    with pytest.raises(UnsafeFile, match="unsafe content"):
        io.load_artifact(p, "checkpoint")
    assert not marker.exists()


def test_artifacts_hold_plain_types_only(refs):
    """Every artifact the reference runs wrote loads with weights_only=True and no allowlist."""
    n = 0
    for root in (refs.dense, refs.prune, refs.sparse):
        for p in root.rglob("*.pt"):
            torch.load(p, map_location="cpu", weights_only=True)
            n += 1
    assert n >= 10
