"""MNIST-1D, generated offline from (n_train, n_test, seed) and cached once.

The ``mnist1d`` package's ``make_dataset`` is deterministic given its seed, so
the data need never be downloaded. It seeds numpy's and Python's global RNGs
itself; we save and restore both so callers' random streams are untouched.

The cache is one torch file ``{root}/mnist1d/mnist1d_train{N}_test{M}_seed{S}.pt``
with a ``.sha256`` sidecar in ``sha256sum`` format. Its bytes depend only on the
config (serialised through a buffer, so the temporary file name never leaks in),
which makes concurrent generation safe: every job writes identical bytes, each
through an atomic rename, sidecar first so a visible data file always has one.
"""

from __future__ import annotations

import contextlib
import hashlib
import io as _io
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError
from ..io import atomic_path, safe_torch_load
from .base import ArrayDataset
from .catalog import dataset_info

DATASETS = [{
    "name": "mnist1d", "label": "MNIST-1D", "num_classes": 10, "in_channels": 1, "input_shape": [40],
    # statistics of the default generated training set (20,000 examples, seed 0), measured once
    "mean": [-0.0009755066834683008], "std": [1.0007546007973294], "augment": False, "flip": False,
    "obtain": "generate", "download": None, "scale": 1.0, "n_train": 20000, "host_mem_mb": 1000,
}]

DEFAULT_N_TRAIN = 20_000
DEFAULT_N_TEST = 5_000
DEFAULT_SEED = 0
FORMAT = "sparsebasin.mnist1d/1"


@dataclass(frozen=True)
class MNIST1DConfig:
    n_train: int = DEFAULT_N_TRAIN
    n_test: int = DEFAULT_N_TEST
    seed: int = DEFAULT_SEED

    def __post_init__(self) -> None:
        for key in ("n_train", "n_test"):
            v = getattr(self, key)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise UserError(f"MNIST-1D --{key.replace('_', '-')} must be a positive integer, got {v!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or not 0 <= self.seed < 2**32:
            raise UserError(f"MNIST-1D --seed must be an integer in [0, 2**32), got {self.seed!r}")

    @property
    def file_name(self) -> str:
        return f"mnist1d_train{self.n_train}_test{self.n_test}_seed{self.seed}.pt"

    def prepare_command(self, root: str | Path) -> str:
        cmd = f"python -m sparsebasin prepare --dataset mnist1d --data-dir {root}"
        if self != MNIST1DConfig():
            cmd += f" --n-train {self.n_train} --n-test {self.n_test} --seed {self.seed}"
        return cmd


def cache_path(root: str | Path, config: MNIST1DConfig = MNIST1DConfig()) -> Path:
    return Path(root) / "mnist1d" / config.file_name


def checksum_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


@contextlib.contextmanager
def _global_rngs_preserved():
    """make_dataset reseeds numpy's and Python's global RNGs; put them back afterwards."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    try:
        yield
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)


def _make_dataset(args) -> dict:
    """``mnist1d.data.make_dataset``, bit for bit, in a fifth of the time (tests/test_data_mnist1d.py compares).

    The package builds a scipy ``interp1d`` per call (which then delegates to
    ``np.interp`` for 1-D float64 data) and also interpolates the time axis of
    every example, which consumes no random numbers and is not used: here
    ``np.interp`` is called directly and that work skipped. Every random draw
    is the package's own function, in its order.
    """
    from mnist1d.data import get_templates
    from mnist1d.transform import corr_noise_like, iid_noise_like, pad, shear, translate
    from mnist1d.utils import set_seed

    templates = get_templates()
    set_seed(args.seed)
    dilated = args.template_len + args.padding[-1]
    grids: dict[int, np.ndarray] = {}

    def interpolate(x: np.ndarray, n: int) -> np.ndarray:
        if len(x) not in grids:
            grids[len(x)] = np.linspace(0, 1, len(x))
        if -n not in grids:
            grids[-n] = np.linspace(0, 1, n)
        return np.interp(grids[-n], grids[len(x)], x)

    xs, ys = [], []
    per_class = args.num_samples // len(templates["y"])
    for label in range(len(templates["y"])):
        for _ in range(per_class):
            x = pad(templates["x"][label] + 1e-8, args.padding)
            x = interpolate(x, dilated)
            x *= 1 + args.scale_coeff * (np.random.rand() - 0.5)
            x = translate(x, args.max_translation)
            mask = x != 0
            x = mask * x + (1 - mask) * corr_noise_like(x, args.corr_noise_scale)
            x = x + iid_noise_like(x, args.iid_noise_scale)
            x = shear(x, args.shear_scale)
            xs.append(interpolate(x, args.final_seq_length))
            ys.append(templates["y"][label])
    shuffle = np.random.permutation(len(ys))
    xs, ys = np.stack(xs)[shuffle], np.stack(ys)[shuffle]
    if args.shuffle_seq:
        xs = xs[..., np.random.permutation(args.final_seq_length)]
    xs = (xs - xs.mean()) / xs.std()
    split = int(len(ys) * args.train_split)
    return {"x": xs[:split], "x_test": xs[split:], "y": ys[:split], "y_test": ys[split:]}


def generate(config: MNIST1DConfig = MNIST1DConfig()) -> dict:
    """Generate the dataset in memory: float32 x (N, 40), int64 y, split train/test.

    ``make_dataset`` makes ``num_samples // 10`` examples per class and shuffles
    them; we ask for the total rounded up to a multiple of 10 and take the first
    ``n_train`` as training set and the next ``n_test`` as test set (for the
    default config this is exactly the package's own 80/20 split).
    """
    from mnist1d.data import get_dataset_args

    total = config.n_train + config.n_test
    args = get_dataset_args()
    args.num_samples = -(-total // 10) * 10
    args.train_split = 1.0
    args.seed = config.seed
    with _global_rngs_preserved():
        raw = _make_dataset(args)
    x = torch.from_numpy(np.asarray(raw["x"], dtype=np.float32))
    y = torch.from_numpy(np.asarray(raw["y"], dtype=np.int64))
    n = config.n_train
    return {
        "format": FORMAT,
        "config": {"n_train": config.n_train, "n_test": config.n_test, "seed": config.seed},
        "x_train": x[:n].clone(), "y_train": y[:n].clone(),
        "x_test": x[n:total].clone(), "y_test": y[n:total].clone(),
    }


def _serialise(obj: dict) -> bytes:
    buf = _io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _write_bytes(path: Path, data: bytes) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            tmp.write_bytes(data)
            tmp.chmod(0o644)  # a shared data directory: readable by every job, not only 0600
    except OSError as exc:
        raise UserError(f"could not write {path}: {exc.strerror or exc}; free space or fix permissions of the data directory") from exc


def ensure_cache(root: str | Path, config: MNIST1DConfig = MNIST1DConfig(), *, verify_existing: bool = True) -> Path:
    """Return the cache file for ``config``, generating it if missing (or its sidecar is)."""
    path = cache_path(root, config)
    if path.exists() and checksum_path(path).exists():
        if verify_existing:
            verify(path, root, config)
        return path
    return write_cache(root, generate(config), config)


def write_cache(root: str | Path, obj: dict, config: MNIST1DConfig = MNIST1DConfig()) -> Path:
    """Write ``obj`` (the dict ``generate`` returns) as the cache of ``config``, sidecar first.

    Also how tests put a small, hand-made set under the default cache name.
    """
    path = cache_path(root, config)
    data = _serialise(obj)
    digest = hashlib.sha256(data).hexdigest()
    _write_bytes(checksum_path(path), f"{digest}  {path.name}\n".encode())
    _write_bytes(path, data)
    return path


def _recorded_digest(path: Path, root: str | Path, config: MNIST1DConfig) -> str:
    side = checksum_path(path)
    text = side.read_text(encoding="utf-8", errors="replace").split()
    if not text or len(text[0]) != 64:
        raise UserError(f"{side} is not a sha256 checksum file; delete {path} and {side}, then rerun `{config.prepare_command(root)}`")
    return text[0].lower()


def verify(path: Path, root: str | Path, config: MNIST1DConfig) -> bytes:
    """Check the cache against its sidecar; return its bytes."""
    data = path.read_bytes()
    want = _recorded_digest(path, root, config)
    got = hashlib.sha256(data).hexdigest()
    if got != want:
        raise UserError(
            f"{path} does not match its checksum in {checksum_path(path).name} (corrupt or edited); "
            f"delete it and rerun `{config.prepare_command(root)}`"
        )
    return data


def check(name: str, root: str | Path) -> str:
    path = ensure_cache(root)
    return f"mnist1d: cache {path} verified"


def load(name: str, root: str | Path, split: str, config: MNIST1DConfig = MNIST1DConfig()) -> ArrayDataset:
    """Load one split, generating the cache first if it is missing."""
    path = ensure_cache(root, config, verify_existing=False)
    data = verify(path, root, config)
    try:
        obj = safe_torch_load(_io.BytesIO(data), path, "MNIST-1D cache")
    except UserError as exc:
        raise UserError(f"{exc}; then rerun `{config.prepare_command(root)}`") from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise UserError(f"{path} is not an MNIST-1D cache of this version; delete it and rerun `{config.prepare_command(root)}`")
    return ArrayDataset(
        dataset_info("mnist1d"), obj[f"x_{split}"], obj[f"y_{split}"], split,
        {"source": str(path), **obj["config"]},
    )
