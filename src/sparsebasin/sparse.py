"""The three sparse branches, each a masked run from a rewind checkpoint.

- ``lth``:      A's checkpoint at epoch k with A's mask m_A
- ``naive``:    B's checkpoint at epoch k with m_A
- ``permuted``: B's checkpoint at epoch k with pi(m_A) (from the ``permute`` step)

The branch is a label: the code path is identical and only the files
differ, which is the point of the comparison (same optimiser, schedule and
data order; naive and permuted even start from the same weights). The run
loads the whole rewound state, BatchNorm statistics included, zeroes the
pruned weights and trains on a fresh cosine schedule for ``cfg.epochs``
(the workflow passes T - k).
"""

from __future__ import annotations

from pathlib import Path

import torch

from . import checkpoints
from .branches import BRANCHES
from .errors import UserError
from .pruning.schedule import fmt_sparsity
from .training import TrainConfig, train_run


def check_inputs(init: str | Path, mask: str | Path) -> dict:
    """Init checkpoint and mask must describe the same model; returns facts about the pair."""
    ckpt = checkpoints.load_checkpoint(init)
    m = checkpoints.load_mask(mask)
    checkpoints.same_architecture(ckpt, m, str(init), str(mask))
    model = checkpoints.model_from_checkpoint(ckpt, str(init))
    checkpoints.check_mask(m["mask"], model, str(mask))
    if ckpt.get("mask_sparsity"):
        raise UserError(f"--init {init} is a sparse checkpoint (sparsity {ckpt['mask_sparsity']:.3f}); "
                        "pass the dense run's checkpoint at epoch k")
    density = checkpoints.mask_density(m["mask"])
    requested = (m.get("sparsity") or {}).get("requested")
    return {"k": int(ckpt["epoch"]), "density": density, "requested": requested, "model": ckpt["model"],
            "data": ckpt["data"]}


def run_sparse(
    *,
    init: str | Path,
    mask: str | Path,
    branch: str,
    cfg: TrainConfig,
    dataset: str,
    data_dir: str | Path,
    out_dir: str | Path,
    seed: int = 0,
    data_seed: int | None = None,
    save_epochs=(),
    train_subset: int | None = None,
    device: str | torch.device = "auto",
    tags: dict | None = None,
    progress: str = "auto",
) -> dict:
    """Train one sparse branch into ``out_dir`` (the trainer's run directory); returns result.json's dict.

    ``data_seed`` (default ``seed``) alone sets the data order: the LTH
    ensemble group varies it with init and mask fixed.
    """
    if branch not in BRANCHES:
        raise UserError(f"--branch {branch!r} is not one of {', '.join(BRANCHES)}")
    facts = check_inputs(init, mask)
    tags = dict(tags or {})
    tags.setdefault("branch", branch)
    tags.setdefault("k", str(facts["k"]))
    if facts["requested"] is not None:
        tags.setdefault("sparsity", fmt_sparsity(facts["requested"]))
    return train_run(
        model_cfg=None,
        dataset=dataset,
        data_dir=data_dir,
        cfg=cfg,
        seed=int(seed),
        data_seed=int(seed if data_seed is None else data_seed),
        out_dir=out_dir,
        save_epochs=save_epochs,
        init_checkpoint=init,
        mask_path=mask,
        train_subset=train_subset,
        device=device,
        tags=tags,
        run_name=f"sparse-{branch}-k{facts['k']}",
        progress=progress,
    )
