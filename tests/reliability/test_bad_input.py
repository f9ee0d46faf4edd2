"""Bad input to the step CLIs: one clear line naming the file or option and what to do, no partial output.

Every case runs the real CLI (``sparsebasin.cli.main`` in-process; a few also
as ``python -m sparsebasin`` in a subprocess) on a workspace holding valid
inputs from the reference runs plus the one bad thing, and asserts:

- a non-zero exit status (2: the CLI's ``UserError`` or argparse);
- no traceback; apart from the trainer's ``[sparsebasin]`` progress lines,
  stderr is ONE line (bad options too: the CLI leaves argparse's usage block
  to ``--help``);
- that line names the file / option / key, and says what to do;
- no file was created, changed or removed anywhere in the workspace or in
  the data directory (listings with size, mtime and sha256 before/after).
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from relutil import diff_snapshots, env_with_venv, snapshot, write_mnist1d_cache

from sparsebasin import checkpoints, cli
from sparsebasin.data import mnist1d
from sparsebasin.models import build_model
from sparsebasin.symmetry.permfile import save_permutation
from sparsebasin.symmetry.spec import spec_from_meta

ACTION_WORDS = ("choose", "delete", "rerun", "pass", "fix", "remove", "use", "lower", "set", "check", "fetch", "add",
                "pick", "give", "free", "must", "expected", "rename")


@dataclass
class Case:
    argv: list[str]
    names: list[str]                      # each must appear in the error line
    argparse: bool = False
    allow_new_empty_dirs: list[str] = field(default_factory=list)  # relative to the workspace


class Ctx:
    def __init__(self, ws: Path, refs):
        self.ws, self.refs, self.data = ws, refs, refs.data
        self.out = ws / "out"
        self.cleanup = []

    def p(self, name: str) -> Path:
        return self.ws / name

    def train(self, *extra: str, data: Path | None = None, out: Path | None = None) -> list[str]:
        return ["train", "--dataset", "mnist1d", "--data-dir", str(data or self.data), "--model", "mlp",
                "--hidden", "32", "--preset", "mnist1d_dense", "--epochs", "2", "--batch-size", "64",
                "--device", "cpu", "--threads", "1", "--progress", "log", "--out-dir", str(out or self.out), *extra]

    def sparse(self, init: Path, mask: Path, *extra: str) -> list[str]:
        return ["sparse", "--init", str(init), "--mask", str(mask), "--branch", "lth", "--dataset", "mnist1d",
                "--data-dir", str(self.data), "--preset", "mnist1d_sparse", "--epochs", "2", "--batch-size", "64",
                "--device", "cpu", "--threads", "1", "--progress", "log", "--out-dir", str(self.out), *extra]

    def prune(self, checkpoint: Path, *extra: str, targets: str = "0.5", out: Path | None = None) -> list[str]:
        return ["prune", "--checkpoint", str(checkpoint), "--targets", targets, "--rate", "0.5",
                "--ft-preset", "mnist1d_imp_ft", "--ft-epochs", "1", "--dataset", "mnist1d",
                "--data-dir", str(self.data), "--device", "cpu", "--threads", "1", "--progress", "log",
                "--out-dir", str(out or self.out), *extra]

    # ---- inputs made from the reference runs
    def mask_obj(self) -> dict:
        """The reference mask as another tool would write it: no checksums or recorded counts (a sparsebasin
        file edited in place is refused by its checksum before any of the checks these cases test)."""
        obj = torch.load(self.refs.mask, map_location="cpu", weights_only=False)
        obj.pop("checksums", None)
        obj.pop("kept", None)
        obj.pop("sparsity", None)
        return obj

    def save(self, name: str, obj) -> Path:
        path = self.p(name)
        torch.save(obj, path)
        return path

    def truncated(self, src: Path, name: str) -> Path:
        data = src.read_bytes()
        path = self.p(name)
        path.write_bytes(data[: len(data) // 2])
        return path

    def checkpoint_of(self, name: str, model_cfg: dict, epoch: int = 0) -> Path:
        torch.manual_seed(0)
        model = build_model(model_cfg, 10, 1, input_size=40)
        path = self.p(name)
        checkpoints.save_checkpoint(path, model, model_cfg, checkpoints.data_meta(_mnist_info()), epoch)
        return path

    def data_copy(self, name: str = "data") -> Path:
        dst = self.p(name)
        shutil.copytree(self.data, dst)
        return dst

    def dataset_with(self, name: str, edit) -> Path:
        """A data directory whose MNIST-1D cache (valid checksum) is the real one edited by ``edit(obj)``."""
        obj = dict(_mnist_small())
        edit(obj)
        root = self.p(name)
        write_mnist1d_cache(root, obj)
        return root

    def permutation(self, name: str, edit) -> Path:
        ck = checkpoints.load_checkpoint(self.refs.dense / "final.pt")
        _, spec = spec_from_meta(ck["model"], ck["data"])
        perm = {g: torch.arange(n) for g, n in spec.sizes.items()}
        edit(perm)
        path = self.p(name)
        # save_permutation would not check; the loader must.
        save_permutation(path, perm, ck["model"], ck["data"], {"method": "test"})
        return path


@functools.lru_cache(maxsize=1)
def _mnist_small() -> dict:
    return mnist1d.generate(mnist1d.MNIST1DConfig(n_train=600, n_test=200, seed=0))


def _mnist_info():
    from sparsebasin.data import dataset_info

    return dataset_info("mnist1d")


def _mask_with(ctx: Ctx, name: str, edit) -> Path:
    obj = ctx.mask_obj()
    edit(obj["mask"])
    return ctx.save(name, obj)


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


# ----------------------------------------------------------------- cases --
# name -> builder(ctx) -> Case. Builders create the bad input BEFORE the snapshot.

def c_width_zero(ctx):
    return Case(ctx.train("--width", "0"), ["width", "0"], argparse=True)


def c_unknown_model(ctx):
    argv = ctx.train()
    argv[argv.index("mlp")] = "mpl"
    return Case(argv, ["--model", "mpl"], argparse=True)


def c_unknown_dataset(ctx):
    argv = ctx.train()
    argv[argv.index("mnist1d")] = "mnist2d"
    return Case(argv, ["--dataset", "mnist2d"], argparse=True)


def c_wrong_type_epochs(ctx):
    argv = ctx.train()
    argv[argv.index("--epochs") + 1] = "ten"
    return Case(argv, ["--epochs", "ten"], argparse=True)


def c_missing_dataset_dir(ctx):
    missing = ctx.p("no-such-data")
    argv = ["train", "--dataset", "cifar10", "--data-dir", str(missing), "--model", "resnet20", "--epochs", "1",
            "--device", "cpu", "--threads", "1", "--out-dir", str(ctx.out)]
    return Case(argv, [str(missing), "download"])


def c_corrupt_mnist1d_cache(ctx):
    data = ctx.data_copy()
    _flip_byte(mnist1d.cache_path(data))
    return Case(ctx.train(data=data), [str(mnist1d.cache_path(data)), "checksum", "prepare"])


def c_empty_dataset(ctx):
    data = ctx.dataset_with("empty", lambda o: o.update(x_train=torch.zeros(0, 40), y_train=torch.zeros(0, dtype=torch.long)))
    return Case(ctx.train(data=data), ["mnist1d"])


def c_all_one_class(ctx):
    data = ctx.dataset_with("oneclass", lambda o: o.update(y_train=torch.full((600,), 3, dtype=torch.long)))
    return Case(ctx.train(data=data), ["mnist1d"])


def c_nan_loss(ctx):
    return Case(ctx.train("--lr", "1e30"), ["--lr", "diverged"], allow_new_empty_dirs=["out"])


def c_nan_in_data(ctx):
    def edit(obj):
        obj["x_train"] = obj["x_train"].clone()
        obj["x_train"][7, 5] = float("nan")

    data = ctx.dataset_with("nandata", edit)
    return Case(ctx.train(data=data), ["diverged", "inputs"], allow_new_empty_dirs=["out"])


def c_save_epoch_beyond_epochs(ctx):  # a rewind point >= epochs (k = epochs is the final model)
    return Case(ctx.train("--save-epochs", "0,3"), ["--save-epochs", "3"])


def c_truncated_checkpoint(ctx):
    bad = ctx.truncated(ctx.refs.dense / "final.pt", "final_truncated.pt")
    return Case(ctx.prune(bad), [str(bad), "truncated"])


def c_truncated_mask(ctx):
    bad = ctx.truncated(ctx.refs.mask, "mask_truncated.pt")
    return Case(ctx.sparse(ctx.refs.init, bad), [str(bad), "truncated"])


def c_checkpoint_other_architecture(ctx):
    other = ctx.checkpoint_of("deep.pt", {"name": "mlp", "width": 1, "hidden": 32, "depth": 3})
    return Case(ctx.sparse(other, ctx.refs.mask), [str(other), str(ctx.refs.mask)])


def c_checkpoint_other_width(ctx):
    other = ctx.checkpoint_of("wide.pt", {"name": "mlp", "width": 2, "hidden": 32})
    return Case(ctx.sparse(other, ctx.refs.mask), [str(other)])


def c_init_other_architecture(ctx):
    other = ctx.checkpoint_of("deep.pt", {"name": "mlp", "width": 1, "hidden": 32, "depth": 3})
    return Case(ctx.train("--init", str(other)), [str(other)])


def c_mask_unknown_key(ctx):
    def edit(m):
        m["hidden.7.weight"] = torch.ones(4, 4, dtype=torch.bool)

    bad = _mask_with(ctx, "mask_keys.pt", edit)
    return Case(ctx.train("--mask", str(bad)), [str(bad), "hidden.7.weight"])


def c_mask_wrong_shape(ctx):
    def edit(m):
        m["head.weight"] = torch.ones(10, 16, dtype=torch.bool)

    bad = _mask_with(ctx, "mask_shape.pt", edit)
    return Case(ctx.sparse(ctx.refs.init, bad), [str(bad), "head.weight", "shape"])


def c_mask_not_boolean(ctx):
    def edit(m):
        for k in m:
            m[k] = m[k].float()

    bad = _mask_with(ctx, "mask_float.pt", edit)
    return Case(ctx.sparse(ctx.refs.init, bad), [str(bad), "bool"])


def c_mask_is_a_checkpoint(ctx):
    return Case(ctx.sparse(ctx.refs.init, ctx.refs.dense / "final.pt"), [str(ctx.refs.dense / "final.pt"), "mask"])


def c_permutation_repeated_index(ctx):
    def edit(perm):
        g = next(iter(perm))
        perm[g][1] = perm[g][0]

    bad = ctx.permutation("perm_repeat.pt", edit)
    return Case(["permute", "--permutation", str(bad), "--input", str(ctx.refs.mask), "--out", str(ctx.p("pm.pt"))],
                [str(bad), "repeats an index"])


def c_permutation_wrong_length(ctx):
    def edit(perm):
        g = next(iter(perm))
        perm[g] = torch.arange(len(perm[g]) - 1)

    bad = ctx.permutation("perm_short.pt", edit)
    return Case(["permute", "--permutation", str(bad), "--input", str(ctx.refs.mask), "--out", str(ctx.p("pm.pt"))],
                [str(bad), "length"])


def c_sparsity_zero(ctx):
    return Case(ctx.prune(ctx.refs.dense / "final.pt", targets="0"), ["sparsity", "0"])


def c_sparsity_one(ctx):
    return Case(ctx.prune(ctx.refs.dense / "final.pt", targets="1"), ["sparsity", "1"])


def c_sparsity_negative(ctx):
    return Case(ctx.prune(ctx.refs.dense / "final.pt", targets="-0.5"), ["sparsity", "-0.5"])


def c_match_other_width(ctx):
    wide = ctx.checkpoint_of("wide.pt", {"name": "mlp", "width": 2, "hidden": 32})
    return Case(["match", "--a", str(ctx.refs.dense / "final.pt"), "--b", str(wide), "--dataset", "mnist1d",
                 "--data-dir", str(ctx.data), "--batches", "2", "--batch-size", "64", "--device", "cpu",
                 "--out", str(ctx.p("perm.pt")), "--summary", str(ctx.p("perm.json"))], [str(wide)])


def c_results_dir_is_a_file(ctx):
    blocker = ctx.p("results")
    blocker.write_text("a file where the results directory should be\n")
    return Case(ctx.train(out=blocker / "run"), [str(blocker / "run")])


def c_prune_results_dir_is_a_file(ctx):
    blocker = ctx.p("results")
    blocker.write_text("a file where the results directory should be\n")
    return Case(ctx.prune(ctx.refs.dense / "final.pt", out=blocker / "prune"), [str(blocker)])


def _read_only_dir(ctx) -> Path:
    ro = ctx.p("readonly")
    ro.mkdir()
    ok = subprocess.run(["mount", "--bind", str(ro), str(ro)], capture_output=True).returncode == 0
    ok = ok and subprocess.run(["mount", "-o", "remount,bind,ro", str(ro)], capture_output=True).returncode == 0
    if not ok:
        subprocess.run(["umount", str(ro)], capture_output=True)
        pytest.skip("cannot make a read-only bind mount here (needs root)")
    ctx.cleanup.append(lambda: subprocess.run(["umount", "-l", str(ro)], capture_output=True))
    return ro


def c_results_dir_read_only(ctx):
    ro = _read_only_dir(ctx)
    return Case(ctx.train(out=ro / "run"), [str(ro / "run")])


def c_prune_results_dir_read_only(ctx):
    ro = _read_only_dir(ctx)
    return Case(ctx.prune(ctx.refs.dense / "final.pt", out=ro / "prune"), [str(ro)])


def c_directory_as_mask(ctx):  # a run directory where a file belongs: say so, never "delete it"
    return Case(ctx.sparse(ctx.refs.init, ctx.refs.prune / "S0.5"), [str(ctx.refs.prune / "S0.5"), "is a directory"])


def c_directory_as_checkpoint(ctx):
    return Case(ctx.prune(ctx.refs.dense), [str(ctx.refs.dense), "is a directory", "final.pt"])


def c_directory_as_predictions(ctx):
    return Case(["ensemble", "--predictions", str(ctx.refs.dense), str(ctx.refs.sparse / "predictions.pt"),
                 "--group", "g", "--out", str(ctx.p("e.json"))], [str(ctx.refs.dense), "is a directory"])


def c_directory_as_result(ctx):
    return Case(["collect", "--inputs", str(ctx.refs.sparse), "--out", str(ctx.p("t.csv"))],
                [str(ctx.refs.sparse), "is a directory"])


def c_directory_as_table(ctx):
    return Case(["table", "--kind", "accuracy", "--table", str(ctx.refs.sparse), "--out-csv", str(ctx.p("t.csv")),
                 "--out-md", str(ctx.p("t.md"))], [str(ctx.refs.sparse), "is a directory"])


# Bugs this suite found; each stays a strict xfail until fixed (docs/reliability.md).
XFAIL: dict[str, str] = {}  # all five bugs this suite found are fixed (docs/reliability.md)

CASES = {name[2:]: fn for name, fn in sorted(globals().items()) if name.startswith("c_")}


def run_cli(argv, capsys) -> tuple[int, str]:
    try:
        rc = cli.main(list(argv))
    except SystemExit as exc:  # argparse
        rc = exc.code if isinstance(exc.code, int) else 1
    return rc, capsys.readouterr().err


def check_error(rc: int, err: str, case: Case) -> str:
    assert rc != 0, f"exit status 0 for bad input\n{err[-2000:]}"
    assert "Traceback" not in err, err[-3000:]
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("[sparsebasin]")]
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n" + "\n".join(lines)
    line = lines[0]
    if case.argparse:  # argparse's usage block is left to --help: one line naming the option
        assert line.startswith("error: argument ") and "--help" in line, line
        assert "invalid" in line or "choose from" in line or "required" in line or "must be" in line, line
    assert line.startswith("error:") or ": error:" in line, line
    for name in case.names:
        assert name in line, f"{name!r} not named in: {line}"
    assert any(w in line.lower() for w in ACTION_WORDS), f"no hint what to do in: {line}"
    return line


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.xfail(strict=True, reason=XFAIL[n]))
                                  if n in XFAIL else n for n in CASES])
def test_bad_input_cli(name, refs, tmp_path, capsys):
    ctx = Ctx(tmp_path, refs)
    try:
        case = CASES[name](ctx)
        dirs = [tmp_path, refs.data]
        before = snapshot(*dirs)
        rc, err = run_cli(case.argv, capsys)
        diff = diff_snapshots(before, snapshot(*dirs))
        line = check_error(rc, err, case)
        allowed = {f"new {tmp_path / d}" for d in case.allow_new_empty_dirs}
        assert [d for d in diff if d not in allowed] == [], diff
        for d in case.allow_new_empty_dirs:
            assert not (tmp_path / d).exists() or not any((tmp_path / d).iterdir()), f"{d} is not empty"
        print(f"\n{name}: {line}")
    finally:
        for fn in ctx.cleanup:
            fn()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["truncated_checkpoint"])
def test_bad_input_real_entry_point(name, refs, tmp_path):
    """The same through ``python -m sparsebasin`` in a fresh interpreter: exit status 2, one error line
    (one case: every interpreter start costs seconds; the kill tests run the entry point too)."""
    ctx = Ctx(tmp_path, refs)
    case = CASES[name](ctx)
    dirs = [tmp_path, refs.data]
    before = snapshot(*dirs)
    proc = subprocess.run([sys.executable, "-m", "sparsebasin", *case.argv], env=env_with_venv(), cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    check_error(proc.returncode, proc.stderr, case)
    assert diff_snapshots(before, snapshot(*dirs)) == []
    assert proc.stdout == ""


def test_case_count():
    """The suite keeps at least twenty distinct bad inputs for the CLIs (plus the config ones)."""
    assert len(CASES) >= 20, len(CASES)
