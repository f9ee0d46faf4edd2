"""A run's inputs, resolved and loaded once: what ``train``, ``sparse`` and ``fused`` train.

``resolve_member`` turns names and paths (an init checkpoint or a seed, a
mask, a branch) into a ``session.Member``: each file is read once and checked
against the run's model and dataset, so pairing a checkpoint or mask of
another architecture, width or dataset fails with one line naming the file.
A run with a ``branch`` (lth / naive / permuted / random / signs: the records
of ``sparsebasin.branches``) is a sparse run: its init must be a dense rewind
checkpoint, the branch's transforms of mask and weights are applied here, and
its tags (branch, k, sparsity) and name come from the files.

``train_run`` (one run), ``run_sparse`` (one branch) and ``fused_run`` (a
group, with ``RunSpec`` from ``--run``/``--runs``) are the library calls the
step CLIs make.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from .. import branches, checkpoints, io, unhonoured
from ..branches import BRANCHES
from ..errors import UserError
from ..masking import check_trainable
from ..models import model_spec
from ..options import DataOptions, RunOptions
from ..pruning.schedule import fmt_sparsity
from .config import TrainConfig
from .loop import fit
from .session import Member


def check_matches(obj: dict, what: str, path: str | Path, model_cfg: dict, train_ds) -> None:
    """The file is for this model and width, and for the data the run reads (classes and inputs as loaded)."""
    from ..data import check_fits

    if model_spec(obj["model"]) != model_cfg:
        raise UserError(
            f"{what} {path} is for model {obj['model']}, but the run asks for {model_cfg}; "
            "pass a file of the same model and width (or change --model/--width)"
        )
    check_fits(obj["data"], train_ds, f"{what} {path}")


def resolve_member(*, out_dir: str | Path, meta: dict, train_ds, model_cfg: dict | None = None,
                   init: str | Path | None = None,
                   seed: int = 0, mask: str | Path | None = None, mask_permutation: str | Path | None = None,
                   branch: str | None = None, data_seed: int | None = None, tags: Mapping | None = None,
                   run_name: str | None = None, provenance: Mapping | None = None,
                   signs_from: str | Path | None = None, mask_seed: int | None = None) -> tuple[Member, dict]:
    """Load one run's init (or build it from ``seed``) and mask, once; returns (member, its model cfg).

    With ``mask_permutation`` the run trains with that permutation applied to
    ``mask`` (pi(m_A) from m_A and pi), exactly the mask ``sparsebasin
    permute`` would have written. A branch's own transforms follow its record:
    ``random`` shuffles the mask within each layer under ``mask_seed``
    (default ``seed``), ``signs`` gives the init the signs of ``signs_from``
    (A's checkpoint at the same epoch).
    """
    tags = dict(tags or {})
    unheld: dict = {}  # settings this run cannot honour (sparsebasin.unhonoured), recorded in its provenance
    if branch is not None and branch not in BRANCHES:
        raise UserError(f"--branch {branch!r} is not one of {', '.join(BRANCHES)}")
    record = branches.get(branch) if branch is not None else None
    if mask_permutation is not None and mask is None:
        raise UserError(f"run {out_dir}: a mask permutation ({mask_permutation}) needs the mask it permutes")
    if mask_permutation is not None and record is not None and record.mask not in ("m_A", "pi(m_A)"):
        raise UserError(f"run {out_dir}: a {branch} run uses {record.mask}; drop --mask-permutation")
    if signs_from is not None and (record is None or not record.needs_signs):
        raise UserError(f"run {out_dir}: --signs-from is for the signs branch (this run is {branch or 'not a branch'})")
    if record is not None and record.needs_signs and signs_from is None:
        raise UserError(f"run {out_dir}: a {branch} run needs --signs-from, A's rewind checkpoint at the same epoch "
                        "as --init")
    ckpt = checkpoints.load_checkpoint(init) if init is not None else None
    mask_obj = checkpoints.load_mask(mask) if mask is not None else None
    if mask_permutation is not None:
        from ..symmetry.permfile import permute_artifact

        mask_obj = permute_artifact(mask_permutation, mask, mask_obj)[1]
    if branch is not None:
        if ckpt is None or mask_obj is None:
            raise UserError(f"a {branch} run needs both an init (rewind checkpoint) and a mask")
        checkpoints.same_architecture(ckpt, mask_obj, str(init), str(mask))
        if ckpt.get("mask_sparsity"):
            raise UserError(f"--init {init} is a sparse checkpoint (sparsity {ckpt['mask_sparsity']:.3f}); "
                            "pass the dense run's checkpoint at epoch k")
        ckpt, mask_obj, transform = _apply_branch(record, ckpt, mask_obj, init, signs_from,
                                                  int(seed if mask_seed is None else mask_seed))
    if ckpt is not None:
        run_cfg = model_spec(model_cfg if model_cfg is not None else ckpt["model"])
        check_matches(ckpt, "checkpoint", init, run_cfg, train_ds)
        model = checkpoints.model_from_checkpoint(ckpt, str(init))
        init_epoch, init_seed = int(ckpt["epoch"]), None
    else:
        if model_cfg is None:
            raise UserError(f"run {out_dir}: no init checkpoint and no --model; give one of them")
        run_cfg = model_spec(model_cfg)
        torch.manual_seed(int(seed))
        model = checkpoints.build_from_meta(run_cfg, meta)
        init_epoch, init_seed = None, int(seed)
    tensors = None
    if mask_obj is not None:
        checkpoints.check_mask(mask_obj["mask"], model, str(mask))
        check_matches(mask_obj, "mask", mask, run_cfg, train_ds)
        tensors = mask_obj["mask"]
        check_trainable(tensors, model, str(mask))
    if branch is not None:
        tags.setdefault("branch", branch)
        tags.setdefault("k", str(init_epoch))
        requested = (mask_obj.get("sparsity") or {}).get("requested")
        if requested is not None:
            tags.setdefault("sparsity", fmt_sparsity(requested))
            # the tag labels every figure and table: say it, and record the measured value, if the mask is not it
            kept = sum(int(m.sum()) for m in tensors.values())
            total = sum(m.numel() for m in tensors.values())
            short = unhonoured.sparsity(requested, 1 - kept / total, kept, total, f"sparsity of mask {mask}")
            if short:
                unheld["sparsity"] = short
        run_name = run_name or f"sparse-{branch}-k{init_epoch}"
    member = Member(
        model=model, out_dir=Path(out_dir), run_name=run_name or str(out_dir),
        data_seed=int(seed if data_seed is None else data_seed), mask=tensors, tags=tags,
        provenance_config={
            **dict(provenance or {}),
            "init_checkpoint": str(init) if init is not None else None,
            "init_checkpoint_epoch": init_epoch,
            "mask": str(mask) if mask is not None else None,
            **({"mask_permutation": str(mask_permutation)} if mask_permutation is not None else {}),
            **({"branch": {**branches.describe(record), **transform}} if record is not None else {}),
            **({"unhonoured": unheld} if unheld else {}),
        },
        init_seed=init_seed,
    )
    return member, run_cfg


def _apply_branch(record, ckpt: dict, mask_obj: dict, init, signs_from, mask_seed: int) -> tuple[dict, dict, dict]:
    """The branch's transforms of mask and weights (its record says which); returns (ckpt, mask, what was done)."""
    done: dict = {}
    if record.mask == "shuffled m_A":
        mask_obj = {**mask_obj, "mask": branches.shuffled_mask(mask_obj["mask"], mask_seed)}
        done["mask_seed"] = mask_seed
    if record.needs_signs:
        signs = checkpoints.load_checkpoint(signs_from)
        checkpoints.same_architecture(ckpt, signs, str(init), str(signs_from))
        if int(signs["epoch"]) != int(ckpt["epoch"]) or signs.get("mask_sparsity"):
            raise UserError(f"--signs-from {signs_from} is a checkpoint at epoch {signs['epoch']}, but --init {init} is at "
                            f"epoch {ckpt['epoch']}; pass A's dense checkpoint at the same rewind point")
        ckpt = {**ckpt, "state_dict": branches.signs_applied(ckpt["state_dict"], signs["state_dict"],
                                                                mask_obj["mask"].keys())}
        done["signs_from"] = str(signs_from)
    return ckpt, mask_obj, done


def _data(data: DataOptions):
    """Both splits and the data meta every output records: the classes and inputs as read (not the card's)."""
    train_ds, test_ds = data.load("train"), data.load("test")
    meta = checkpoints.data_meta(train_ds.info)
    if checkpoints.data_meta(test_ds.info) != meta:
        raise UserError(f"the {data.dataset} train and test splits in {data.data_dir} differ "
                        f"({meta} vs {checkpoints.data_meta(test_ds.info)}); fix the data files")
    return train_ds, test_ds, meta


def train_run(*, model_cfg: dict | None, data: DataOptions, cfg: TrainConfig, seed: int, data_seed: int,
              out_dir: str | Path, save_epochs=(), init_checkpoint: str | Path | None = None,
              mask_path: str | Path | None = None, mask_permutation: str | Path | None = None,
              branch: str | None = None, run_name: str | None = None, run: RunOptions = RunOptions(),
              signs_from: str | Path | None = None, mask_seed: int | None = None) -> dict:
    """Train one model end to end and write ``out_dir``; returns the result dict.

    The model is built with ``torch.manual_seed(seed)`` or, with
    ``init_checkpoint``, loaded from it (``model_cfg`` may then be None: it
    is taken from the checkpoint). ``data_seed`` drives order and
    augmentation only.
    """
    cfg = cfg.validate()
    train_ds, test_ds, meta = _data(data)
    member, run_cfg = resolve_member(out_dir=out_dir, meta=meta, train_ds=train_ds, model_cfg=model_cfg,
                                     init=init_checkpoint,
                                     seed=seed, mask=mask_path, mask_permutation=mask_permutation, branch=branch,
                                     data_seed=data_seed, tags=run.tags,
                                     run_name=run_name, provenance=data.record(), signs_from=signs_from,
                                     mask_seed=mask_seed)
    return fit(member.model, train_ds, test_ds, cfg, out_dir=member.out_dir, mask=member.mask,
               data_seed=member.data_seed, save_epochs=save_epochs, model_cfg=run_cfg, data_meta=meta,
               run_name=member.run_name, tags=member.tags, provenance_config=member.provenance_config,
               device=run.device, progress=run.progress, init_seed=member.init_seed, force=run.force)


def run_sparse(*, init: str | Path, mask: str | Path, branch: str, cfg: TrainConfig, data: DataOptions,
               out_dir: str | Path, seed: int = 0, data_seed: int | None = None, save_epochs=(),
               mask_permutation: str | Path | None = None, run: RunOptions = RunOptions(),
               signs_from: str | Path | None = None, mask_seed: int | None = None) -> dict:
    """Train one sparse branch into ``out_dir`` (the trainer's run directory); returns result.json's dict.

    ``data_seed`` (default ``seed``) alone sets the data order: the LTH
    ensemble group varies it with init and mask fixed.
    """
    return train_run(model_cfg=None, data=data, cfg=cfg, seed=int(seed),
                     data_seed=int(seed if data_seed is None else data_seed), out_dir=out_dir,
                     save_epochs=save_epochs, init_checkpoint=init, mask_path=mask, mask_permutation=mask_permutation,
                     branch=branch, run=run, signs_from=signs_from, mask_seed=mask_seed)


# ------------------------------------------------------------ run specs --

RUN_KEYS = ("out_dir", "init", "seed", "mask", "mask_permutation", "signs_from", "mask_seed", "branch", "data_seed",
            "name", "tags")


@dataclass
class RunSpec:
    """One run of a ``fused`` job: where it writes and what it starts from.

    ``init``: a checkpoint to start from (else a seeded init with ``seed``);
    ``mask``: a mask file or None (dense), ``mask_permutation`` a permutation
    applied to it in memory (pi(m_A)); ``branch`` (a record of
    ``sparsebasin.branches``) makes the run exactly what the ``sparse`` step
    would run (its checks, transforms, tags and run name), with
    ``signs_from`` and ``mask_seed`` as that step's options; ``data_seed``
    defaults to ``seed``.
    """

    out_dir: str
    init: str | None = None
    seed: int | None = None
    mask: str | None = None
    mask_permutation: str | None = None
    signs_from: str | None = None
    mask_seed: int | None = None
    branch: str | None = None
    data_seed: int | None = None
    name: str | None = None
    tags: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: Mapping, where: str) -> "RunSpec":
        if not isinstance(d, Mapping):
            raise UserError(f"{where}: a run must be an object with keys {', '.join(RUN_KEYS)}")
        extra = sorted(set(d) - set(RUN_KEYS))
        if extra:
            raise UserError(f"{where}: unknown key(s) {extra}; a run takes {', '.join(RUN_KEYS)}")
        if not d.get("out_dir"):
            raise UserError(f"{where}: every run needs an out_dir")
        spec = cls(out_dir=str(d["out_dir"]))
        for key in ("init", "mask", "mask_permutation", "signs_from", "branch", "name"):
            if d.get(key) is not None:
                setattr(spec, key, str(d[key]))
        for key in ("seed", "data_seed", "mask_seed"):
            v = d.get(key)
            if v is not None:
                try:
                    value = int(v)
                except (TypeError, ValueError):
                    value = -1
                if value < 0 or isinstance(v, bool) or (isinstance(v, float) and not v.is_integer()):
                    raise UserError(f"{where}: {key} must be an integer >= 0, got {v!r}")
                setattr(spec, key, value)
        tags = d.get("tags") or {}
        if not isinstance(tags, Mapping):
            raise UserError(f"{where}: tags must be an object of KEY: VALUE")
        spec.tags = {str(k): str(v) for k, v in tags.items()}
        if spec.branch is not None:
            if spec.branch not in BRANCHES:
                raise UserError(f"{where}: branch {spec.branch!r} is not one of {', '.join(BRANCHES)}")
            if spec.init is None or spec.mask is None:
                raise UserError(f"{where}: a {spec.branch} run needs both init (rewind checkpoint) and mask")
        return spec


def parse_run_arg(text: str, where: str = "--run") -> RunSpec:
    """``out_dir=DIR,init=CKPT,mask=MASK,mask_permutation=PERM,signs_from=CKPT,mask_seed=N,branch=lth,seed=0,data_seed=0,
    name=N,tag.K=V``."""
    d: dict[str, Any] = {}
    tags: dict[str, str] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        if "=" not in part:
            raise UserError(f"{where} {text!r}: {part!r} must look like KEY=VALUE (keys: {', '.join(RUN_KEYS[:-1])}, "
                            "tag.K)")
        k, v = part.split("=", 1)
        k = k.strip()
        if k.startswith("tag."):
            tags[k[4:]] = v
        elif k in RUN_KEYS[:-1]:
            if k in d:
                raise UserError(f"{where} {text!r}: {k} given twice")
            d[k] = v
        else:
            raise UserError(f"{where} {text!r}: unknown key {k!r}; use {', '.join(RUN_KEYS[:-1])} or tag.K=V")
    d["tags"] = tags
    return RunSpec.from_dict(d, f"{where} {text!r}")


def load_run_specs(path: str | Path) -> list[RunSpec]:
    """RUNS.json: a list of run objects, or ``{"runs": [...]}``."""
    obj = io.read_json(path)
    if isinstance(obj, Mapping):
        obj = obj.get("runs")
    if not isinstance(obj, list) or not obj:
        raise UserError(f"{path}: expected a non-empty list of runs (or {{\"runs\": [...]}})")
    return [RunSpec.from_dict(d, f"{path} run {i}") for i, d in enumerate(obj)]


def fused_run(*, runs: Sequence[RunSpec], model_cfg: dict | None, data: DataOptions, cfg: TrainConfig,
              default_seed: int = 0, default_data_seed: int | None = None, save_epochs=(),
              run: RunOptions = RunOptions(), engine: str = "auto", scratch: str | Path | None = None) -> list[dict]:
    """Resolve every run's inputs as ``train_run`` / ``run_sparse`` would, then train them as one fused group."""
    from .fused import fit_fused

    if not runs:
        raise UserError("fused: give at least one run (--runs RUNS.json or --run ...)")
    train_ds, test_ds, meta = _data(data)
    members: list[Member] = []
    group_cfg: dict | None = model_spec(model_cfg) if model_cfg is not None else None
    for spec in runs:
        seed = default_seed if spec.seed is None else spec.seed
        data_seed = spec.data_seed if spec.data_seed is not None else (
            seed if spec.seed is not None or default_data_seed is None else default_data_seed)
        member, run_cfg = resolve_member(out_dir=spec.out_dir, meta=meta, train_ds=train_ds, model_cfg=group_cfg,
                                         init=spec.init,
                                         seed=seed, mask=spec.mask, mask_permutation=spec.mask_permutation,
                                         branch=spec.branch, data_seed=data_seed,
                                         tags={**run.tags, **spec.tags}, run_name=spec.name,
                                         provenance=data.record(), signs_from=spec.signs_from,
                                         mask_seed=spec.mask_seed)
        if group_cfg is None:
            group_cfg = run_cfg
        elif run_cfg != group_cfg:
            raise UserError(f"run {spec.out_dir} is a {run_cfg} model but the group's is {group_cfg}; "
                            "a fused group must share model and width")
        members.append(member)
    return fit_fused(members, train_ds, test_ds, cfg, model_cfg=group_cfg, data_meta=meta, save_epochs=save_epochs,
                     device=run.device, progress=run.progress, engine=engine, scratch=scratch, force=run.force)
