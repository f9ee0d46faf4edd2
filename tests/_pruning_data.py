"""Small real MNIST-1D data for the pruning and sparse-branch tests.

``load_split`` reads the default cache file name; writing a 600/200 example
set (real generator, small) under that name keeps these tests at a fraction
of a second of data generation instead of ten.
"""

from pathlib import Path

import torch

from sparsebasin import checkpoints
from sparsebasin.data import dataset_info, mnist1d
from sparsebasin.models import build_model

N_TRAIN, N_TEST = 600, 200
MODEL = {"name": "mlp", "width": 1, "hidden": 16}


def make_data(root: Path) -> Path:
    mnist1d.write_cache(root, mnist1d.generate(mnist1d.MNIST1DConfig(n_train=N_TRAIN, n_test=N_TEST, seed=0)))
    return root


def meta() -> dict:
    return checkpoints.data_meta(dataset_info("mnist1d"))


def init_checkpoint(path: Path, seed: int, epoch: int = 0, model_cfg: dict = MODEL) -> Path:
    """A seeded initialisation saved as a checkpoint (no training)."""
    torch.manual_seed(seed)
    model = build_model(model_cfg, 10, 1, input_size=40)
    checkpoints.save_checkpoint(path, model, model_cfg, meta(), epoch)
    return path
