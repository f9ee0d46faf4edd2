"""Session fixtures of the reliability suite: small MNIST-1D data, the fork server, reference runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from relutil import ForkServer, env_with_venv, small_mnist1d


@pytest.fixture(scope="session")
def rel_data(tmp_path_factory) -> Path:
    """A 600/200 MNIST-1D cache under the default name (what `prepare` would leave)."""
    return small_mnist1d(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="session")
def forkserver():
    server = ForkServer(env_with_venv())
    yield server
    server.close()


def dense_argv(data: Path, out: Path) -> list[str]:
    return ["train", "--dataset", "mnist1d", "--data-dir", str(data), "--model", "mlp", "--hidden", "32",
            "--preset", "mnist1d_dense", "--epochs", "6", "--batch-size", "16", "--save-epochs", "0,2,4",
            "--seed", "0", "--device", "cpu", "--threads", "1", "--progress", "log", "--tag", "branch=dense",
            "--out-dir", str(out)]


def prune_argv(data: Path, checkpoint: Path, out: Path) -> list[str]:
    return ["prune", "--checkpoint", str(checkpoint), "--targets", "0.5,0.75", "--rate", "0.5",
            "--ft-preset", "mnist1d_imp_ft", "--ft-epochs", "3", "--ft-batch-size", "16", "--dataset", "mnist1d",
            "--data-dir", str(data), "--seed", "0", "--device", "cpu", "--threads", "1", "--progress", "log",
            "--tag", "seed=0", "--out-dir", str(out)]


def sparse_argv(data: Path, init: Path, mask: Path, out: Path) -> list[str]:
    return ["sparse", "--init", str(init), "--mask", str(mask), "--branch", "lth", "--dataset", "mnist1d",
            "--data-dir", str(data), "--preset", "mnist1d_sparse", "--epochs", "4", "--batch-size", "16",
            "--save-epochs", "0,2", "--seed", "1000", "--device", "cpu", "--threads", "1", "--progress", "log",
            "--out-dir", str(out)]


class Refs:
    """Undisturbed reference runs of the three step kinds (dense -> prune -> sparse), with write events."""

    def __init__(self, server: ForkServer, data: Path, root: Path):
        self.data, self.root = data, root
        self.dense = root / "dense"
        self.prune = root / "prune"
        self.sparse = root / "sparse"
        self.init = self.dense / "ckpt" / "epoch2.pt"
        self.mask = self.prune / "S0.5" / "mask.pt"
        self.runs = {}
        for kind, out, argv in (
            ("dense", self.dense, lambda: dense_argv(data, self.dense)),
            ("prune", self.prune, lambda: prune_argv(data, self.dense / "final.pt", self.prune)),
            ("sparse", self.sparse, lambda: sparse_argv(data, self.init, self.mask, self.sparse)),
        ):
            run = server.run(argv(), root, root=out)
            assert run.status == 0, run.err[-3000:]
            self.runs[kind] = run

    def argv(self, kind: str, out: Path) -> list[str]:
        if kind == "dense":
            return dense_argv(self.data, out)
        if kind == "prune":
            return prune_argv(self.data, self.dense / "final.pt", out)
        return sparse_argv(self.data, self.init, self.mask, out)

    def out(self, kind: str) -> Path:
        return {"dense": self.dense, "prune": self.prune, "sparse": self.sparse}[kind]


@pytest.fixture(scope="session")
def refs(forkserver, rel_data, tmp_path_factory) -> Refs:
    return Refs(forkserver, rel_data, tmp_path_factory.mktemp("refs"))
