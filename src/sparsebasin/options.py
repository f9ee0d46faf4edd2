"""What every step shares: where its data is, and how its job runs.

The library's entry points (``train_run``, ``run_sparse``, ``fused_run``,
``run_imp``, ``match_checkpoints``, ``interpolate_checkpoints``,
``plane_through``) take these two records instead of a dozen loose keywords,
and the step CLIs build them from one argument group each
(``steps.common.data_options`` / ``run_options``). Torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class DataOptions:
    """The dataset, its root directory, the training subset (the first N examples; None = all) and where
    ImageNet's JPEGs are decoded (``pil`` workers, or ``device``: sparsebasin.data.jpeg)."""

    dataset: str
    data_dir: str | Path
    train_subset: int | None = None
    decode: str = "pil"

    def record(self) -> dict:
        """What a result's provenance says about its data."""
        return {"dataset": self.dataset, "data_dir": str(self.data_dir), "train_subset": self.train_subset,
                **({"decode": self.decode} if self.decode != "pil" else {})}

    def load(self, split: str):
        """One split (the training subset applies to ``train`` only)."""
        from .data import load_split

        subset = self.train_subset if split == "train" else None
        ds = load_split(self.dataset, self.data_dir, split, train_subset=subset)
        if self.decode != "pil" and hasattr(ds, "decode"):
            import dataclasses

            ds = dataclasses.replace(ds, decode=self.decode)
        return ds


@dataclass(frozen=True)
class RunOptions:
    """How a job runs: device ("auto", "cpu", "cuda[:i]"), progress display, result tags, and what a finished
    run made with other arguments gets: refused (False), replaced (True, ``--force``), or replaced only when
    its inputs or rewind checkpoints changed ("stale", ``--rebuild-stale``: the workflow's mode)."""

    device: str = "auto"
    progress: str = "auto"
    tags: dict = field(default_factory=dict)
    force: bool | str = False


__all__ = ["DataOptions", "RunOptions"]
