"""Iterative magnitude pruning: fine-tuning (IMP-FT) or rewinding, round by round.

Each round of :func:`~sparsebasin.pruning.schedule.imp_schedule` loads its
parent's trained model and mask from disk, prunes to the round's sparsity
by global magnitude (count-exact), then either fine-tunes the survivors
(``mode="ft"``) or resets them to the rewind checkpoint and retrains
(``mode="rewind"``), through the trainer's ``fit`` in ``rounds/round{r}/``.

Resuming: a round is finished once ``rounds/round{r}.pt`` (and its mask) is
on disk; a rerun with the same arguments skips finished rounds, and the
trainer continues an interrupted round from its ``.resume.pt``. Since the
next round always starts from the files on disk, a resumed run follows
exactly the arithmetic of an uninterrupted one (bit-identical on CPU).
``rounds.json`` records the settings; a rerun with other settings into the
same directory discards the old rounds and starts over, never mixing two runs.

Outputs (docs/architecture.md): ``S{s}/{mask.pt, sparsity.json, model.pt}``
per target, plus ``S{s}/result.json`` (the fine-tuning result tagged with
the sparsity and ``branch=imp``) and ``S{s}/predictions.pt`` for the
accuracy tables and IMP ensembles; ``rounds/round{r}.pt`` (+
``round{r}_mask.pt``) per round and ``rounds.json``.

Data-parallel (torchrun, sparsebasin.distributed): every rank prunes the
same parent files to the same mask and fine-tunes its shard of each global
batch (and of the test set); rank 0 alone takes the lock, decides what is
finished and writes, and the ranks meet at a barrier after each round, so
the next round's parent is on disk before any rank reads it.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from pathlib import Path
from typing import Iterable

import torch

from .. import checkpoints, distributed, io, provenance, rundir, unhonoured
from .. import device as devices
from ..errors import UserError
from ..evaluation import evaluate
from ..masking import apply_mask_, check_trainable
from ..models import model_spec
from ..options import DataOptions, RunOptions
from ..progress import log
from ..training import TrainConfig, fit
from ..training.resume import tensor_digest
from ..training.record import STAGING
from .magnitude import kept_count, mask_counts, prune_to, select_keys
from .report import sparsity_report
from .schedule import (IMP_MODES, IMPOptions, Round, fmt_sparsity, imp_schedule, lineage, round_mask_path, round_path,
                       target_dir)

TARGET_FILES = ("mask.pt", "sparsity.json", "model.pt", "result.json", "predictions.pt")
# Settings that determine the results: a rerun must agree on all of them to reuse finished rounds.
_RESUME_KEYS = ("checkpoint_digest", "rewind_digest", "targets", "rate", "mode", "chain", "keys", "train",
                "dataset", "train_subset", "seed", "data_seed", "parallel")


def round_data_seed(data_seed: int, depth: int) -> int:
    """Data-order seed of the fine-tuning at ``depth``: a fresh order per round, the
    same for every chain that reaches that depth (so chained and per-target runs agree)."""
    return int(data_seed) * 1000 + int(depth)


def _load_round(out: Path, r: int, model_cfg: dict, data: dict) -> tuple[dict, dict]:
    ckpt = checkpoints.load_checkpoint(out / round_path(r))
    mask = checkpoints.load_mask(out / round_mask_path(r))
    for obj, path in ((ckpt, round_path(r)), (mask, round_mask_path(r))):
        checkpoints.same_architecture({"model": model_cfg, "data": data}, obj, "the IMP checkpoint", str(out / path))
    return ckpt["state_dict"], mask["mask"]


def _round_done(out: Path, r: int) -> bool:
    return (out / round_path(r)).exists() and (out / round_mask_path(r)).exists()


def _finished_rounds(out: Path, schedule: list[Round], config: dict) -> dict[int, dict]:
    """round -> its stats, for the rounds already on disk from a run with these settings.

    The settings are read from each round's mask file (its provenance), not
    from rounds.json, so a workflow that deletes its declared outputs before
    rerunning still resumes from the finished rounds. Rounds of a run with
    other settings (a changed config value, a retrained dense A) are discarded
    and IMP starts over, as the trainer does with a stale resume file: the
    workflow reruns ``prune`` into the same directory after such a change.
    """
    info = {}
    for r in schedule:
        if not _round_done(out, r.round):
            continue
        obj = checkpoints.load_mask(out / round_mask_path(r.round))
        diff = _config_diff((obj.get("provenance") or {}).get("config", {}), config)
        if diff:
            log(f"{out}: finished IMP rounds come from other settings ({'; '.join(diff)}); discarding them and starting over")
            _discard_rounds(out)
            return {}
        info[r.round] = (obj.get("sparsity") or {}).get("stats", {})
    return info


def _discard_rounds(out: Path) -> None:
    """Remove this IMP run's own round files and fine-tuning run dirs (nothing else in ``out``)."""
    rounds = out / "rounds"
    for path in sorted(rounds.glob("round*")):
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    (out / "rounds.json").unlink(missing_ok=True)


def _config_diff(old: dict, new: dict) -> list[str]:
    """Human-readable differences in the settings that determine the results."""
    out = []
    for k in _RESUME_KEYS:
        a, b = old.get(k), new.get(k)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            out += [f"{k}.{sub} {a.get(sub)!r} -> {b.get(sub)!r}" for sub in sorted(set(a) | set(b)) if a.get(sub) != b.get(sub)]
        elif k.endswith("_digest"):
            out.append(f"{k[:-7]} weights")
        else:
            out.append(f"{k} {a!r} -> {b!r}")
    return out


def _copy_atomic(src: Path, dst: Path) -> None:
    with io.atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


def run_imp(*, checkpoint: str | Path, targets: Iterable[float], out_dir: str | Path, data: DataOptions,
            ft_cfg: TrainConfig, imp: IMPOptions = IMPOptions(), seed: int = 0, data_seed: int | None = None,
            run: RunOptions = RunOptions()) -> dict:
    """Run (or resume) IMP from the trained ``checkpoint``; returns the ``rounds.json`` dict (None on the
    ranks > 0 of a data-parallel run).

    A finished IMP (every target's files, with ``rounds.json`` recording these
    settings) is not redone; one made with other settings is refused unless
    ``force``, and then replaced only once the new IMP has finished (it runs in
    ``.staging/`` meanwhile). Rounds of an unfinished IMP with other settings
    are discarded once this call holds the directory's lock.
    """
    from ..data import check_fits, check_name

    out = Path(out_dir)
    device = devices.resolve(run.device)
    data_seed = int(seed if data_seed is None else data_seed)
    tags = dict(run.tags)
    rate, mode, rewind, chain = imp.rate, imp.mode, imp.rewind, imp.chain
    data_opts = data
    if mode not in IMP_MODES:
        raise UserError(f"--mode {mode!r} is not one of {', '.join(IMP_MODES)}")
    if mode == "rewind" and rewind is None:
        raise UserError("--mode rewind needs --rewind CKPT (the dense run's checkpoint at epoch k)")
    if mode == "ft" and rewind is not None:
        raise UserError("--rewind is only used with --mode rewind; drop it or pass --mode rewind")
    ft_cfg = ft_cfg.validate()
    schedule = imp_schedule(targets, rate, chain)
    targets = sorted({r.target for r in schedule if r.kind == "branch"})

    dense = checkpoints.load_checkpoint(checkpoint)
    model_cfg, data = model_spec(dense["model"]), dict(dense["data"])
    check_name(data, data_opts.dataset, checkpoint)
    train_ds, test_ds = data_opts.load("train"), data_opts.load("test")
    for ds in (train_ds, test_ds):  # the data read now, not the card: a 5-class ImageNet tree has 5 classes
        check_fits(data, ds, checkpoint, data_opts.data_dir)
    model = checkpoints.model_from_checkpoint(dense, str(checkpoint))
    keys = select_keys(model, imp.include, imp.exclude)
    check_targets_keep_weights(targets, model, keys)
    rewind_sd = None
    if rewind is not None:
        rw = checkpoints.load_checkpoint(rewind)
        checkpoints.same_architecture(dense, rw, str(checkpoint), str(rewind))
        checkpoints.check_state_dict(rw["state_dict"], model, str(rewind))
        rewind_sd = rw["state_dict"]

    config = {
        "checkpoint": str(checkpoint),
        "checkpoint_digest": tensor_digest(dense["state_dict"]),
        "rewind": str(rewind) if rewind is not None else None,
        "rewind_digest": tensor_digest(rewind_sd) if rewind_sd is not None else None,
        "rewind_epoch": int(rw["epoch"]) if rewind is not None else None,
        "targets": targets,
        "rate": float(rate),
        "mode": mode,
        "chain": bool(chain),
        "keys": keys,
        "train": ft_cfg.key_dict() | {"eval_batch_size": None},  # what is hashed: new options keep old chains
        **data_opts.record(),
        "seed": int(seed),
        "data_seed": data_seed,
        "model": model_cfg,
        "data": data,
        # data-parallel rounds sum in another order (and normalise BN per rank): not another run's rounds
        **({"parallel": {"processes": distributed.world(), "sync_bn": distributed.sync_bn()}}
           if distributed.active() else {}),
    }
    prov = provenance.collect(config=config, seeds={"seed": int(seed), "data_seed": data_seed}, device=device)

    distributed.check_batch(ft_cfg.batch_size)
    writer = distributed.writer()  # the other ranks of a data-parallel IMP follow rank 0's decisions
    with rundir.locked([out]) if writer else contextlib.nullcontext():
        same = forced = False
        if writer:
            state, old = _imp_status(out, targets, config)
            same = state == "same"
            if state == "more":
                raise UserError(_more_targets(out, old, targets))
            if state == "other" and run.force is not True and not (run.force == "stale" and _inputs_changed(old, config)):
                diff = "; ".join(_config_diff(old.get("config", {}), config)[:4]) or "another version"
                remedy = ("the workflow does not replace it: delete the directory to train it again, or give this "
                          "config its own results tree" if run.force == "stale" else
                          "rerun with --force to replace it (its files go only once the new IMP has finished), "
                          "or choose another --out-dir")
                raise UserError(f"{out} holds a finished IMP made with other settings ({diff}); {remedy}")
            if state == "other" and run.force == "stale":
                log(f"IMP {out}: its dense A changed since it was made; pruning again (the old files stay until the "
                    "new IMP has finished)")
            forced = not same and (state == "other"
                                   or _imp_status(out / STAGING, targets, config, complete=False)[0] == "same")
            if not same and not forced:
                shutil.rmtree(out / STAGING, ignore_errors=True)  # an abandoned forced attempt with other settings
        same, forced = map(bool, distributed.broadcast_ints([int(same), int(forced)]))
        if same:
            if writer:
                log(f"IMP {out}: already finished with these settings; nothing to do")
                return old
            return None
        staging = out / STAGING
        work = staging if forced else out
        index = _run_chain(work, schedule, targets, config, prov, model_cfg=model_cfg, data=data, dense=dense,
                           rewind_sd=rewind_sd, keys=keys, ft_cfg=ft_cfg, splits=(train_ds, test_ds), seed=int(seed),
                           data_seed=data_seed, device=device, tags=tags, progress=run.progress)
        if forced and writer:
            _replace_with(out, staging, targets)
        return index


def _without_targets(config: dict) -> dict:
    return {k: v for k, v in config.items() if k != "targets"}


def _inputs_changed(index: dict, config: dict) -> bool:
    """Whether a finished IMP differs from ``config`` only in its dense A (or rewind) weights: what the workflow
    (--rebuild-stale) prunes again, as a dense run rebuilt with other bits needs."""
    diff = _config_diff(_without_targets(index.get("config") or {}), _without_targets(config))
    return bool(diff) and all(d in ("checkpoint weights", "rewind weights") for d in diff)


def _more_targets(out: Path, index: dict, targets: list[float]) -> str:
    old = sorted(float(t) for t in (index.get("config") or {}).get("targets", []))
    new = sorted(set(targets) - set(old))
    return (f"{out} holds a finished IMP chain for targets {old}; this run also asks for {new}. A chain's rounds "
            "are numbered by its whole target set, so targets cannot be added to a finished one: ask for every target "
            "in one plan (e.g. snakemake --configfile A.yaml B.yaml, whose IMP chain has the union), or give this "
            "config its own results tree (by hand: prune --force replaces the chain with one for these targets)")


def _imp_status(out: Path, targets: list[float], config: dict, complete: bool = True) -> tuple[str, dict | None]:
    """("new" | "same" | "more" | "other", rounds.json) of an IMP directory (``complete``: every target's files
    too). "same": these settings, and every target asked for among the finished ones (a config asking for fewer
    targets than the one that ran shares its chain); "more": these settings, but targets the chain lacks."""
    index_path = out / "rounds.json"
    if not index_path.is_file():
        return "new", None
    try:
        index = io.read_json(index_path)
    except UserError:
        return "new", None
    old_targets = [float(t) for t in (index.get("config") or {}).get("targets", [])]
    if complete:
        if not old_targets or not all((out / target_dir(t) / f).is_file() for t in old_targets for f in TARGET_FILES):
            return "new", index
    if _config_diff(_without_targets(index.get("config") or {}), _without_targets(config)):
        return "other", index
    if not complete:  # a forced attempt in .staging/: resumable only for exactly these targets
        return ("same" if old_targets == sorted(targets) else "other"), index
    return ("same" if set(targets) <= set(old_targets) else "more"), index


def _replace_with(out: Path, staging: Path, targets: list[float]) -> None:
    """Swap a finished forced IMP from ``staging`` into ``out``; rounds.json, the marker, moves last."""
    for old in [*out.glob("S*"), out / "rounds"]:
        if old.is_dir():
            shutil.rmtree(old)
    for new in [*(staging / target_dir(t) for t in targets), staging / "rounds"]:
        new.rename(out / new.name)
    (staging / "rounds.json").replace(out / "rounds.json")
    shutil.rmtree(staging, ignore_errors=True)


def check_targets_keep_weights(targets: list[float], model, keys: list[str]) -> None:
    """Refuse, before any training, a target that keeps no prunable weight at all."""
    params = dict(model.named_parameters())
    total = sum(params[k].numel() for k in keys)
    for t in targets:
        if kept_count(t, total) == 0:
            largest = 1.0 - 0.5 / total
            raise UserError(f"target sparsity {t} keeps 0 of the {total} prunable weights of this model "
                            f"(sparsity 100%); use targets below {largest:.6g}")


def _run_chain(out: Path, schedule: list[Round], targets: list[float], config: dict, prov: dict, *, model_cfg: dict,
               data: dict, dense: dict, rewind_sd, keys: list[str], ft_cfg: TrainConfig, splits: tuple,
               seed: int, data_seed: int, device, tags: dict, progress: str) -> dict | None:
    """Run or resume every round of ``schedule`` in ``out`` and write the targets; returns rounds.json (rank 0)."""

    index_path = out / "rounds.json"
    writer = distributed.writer()
    info = _finished_rounds(out, schedule, config) if writer else {}
    done = distributed.broadcast_ints([int(r.round in info) for r in schedule])
    info = info if writer else {r.round: {} for r, d in zip(schedule, done) if d}
    train_ds, test_ds = splits

    def write_index() -> dict:
        rows = []
        for r in schedule:
            row = r.as_dict() | {"mask_path": round_mask_path(r.round), "done": _round_done(out, r.round)}
            row.update(info.get(r.round, {}))
            rows.append(row)
        index = {
            "config": config,
            "rounds": rows,
            "targets": {
                fmt_sparsity(r.target): {"round": r.round, "lineage": lineage(schedule, r.round), "dir": target_dir(r.target)}
                for r in schedule if r.kind == "branch"
            },
            "provenance": prov,
        }
        io.write_json(index_path, index)
        return index

    if writer:
        write_index()
    t_start = time.perf_counter()
    for r in schedule:
        fresh = r.round not in info
        if fresh:
            serves = ", ".join(fmt_sparsity(b.target) for b in schedule
                               if b.kind == "branch" and r.round in lineage(schedule, b.round))
            info[r.round] = _run_round(
                r, serves=serves, out=out, model_cfg=model_cfg, data=data, dense_sd=dense["state_dict"], rewind_sd=rewind_sd,
                keys=keys, ft_cfg=ft_cfg, train_ds=train_ds, test_ds=test_ds, seed=seed,
                data_seed=data_seed, device=device, tags=tags, progress=progress, prov=prov, config=config,
            )
            if writer:
                write_index()
            distributed.barrier()  # round{r}.pt is on disk before any rank reads it as the next parent
        if not writer:
            continue
        if r.kind == "branch" and (fresh or not all((out / target_dir(r.target) / f).exists() for f in TARGET_FILES)):
            _write_target(r, out=out, schedule=schedule, model_cfg=model_cfg, data=data, tags=tags, prov=prov)
    if not writer:
        return None
    index = write_index()
    log(f"IMP {out}: {len(schedule)} rounds done ({time.perf_counter() - t_start:.0f}s in this call); "
        + ", ".join(f"S{s}: round {v['round']}" for s, v in index["targets"].items()))
    return index


def _run_round(r: Round, *, out: Path, model_cfg: dict, data: dict, dense_sd: dict, rewind_sd: dict | None,
               keys: list[str], ft_cfg: TrainConfig, train_ds, test_ds, seed: int, data_seed: int, device,
               tags: dict, progress: str, prov: dict, config: dict, serves: str = "") -> dict:
    """Prune the parent to ``r.sparsity``, retrain, write the round files; return its summary."""
    if r.parent == 0:
        parent_sd = dense_sd
        model = checkpoints.build_from_meta(model_cfg, data)
        params = dict(model.named_parameters())
        parent_mask = {k: torch.ones_like(params[k], dtype=torch.bool) for k in keys}
    else:
        parent_sd, parent_mask = _load_round(out, r.parent, model_cfg, data)
        if list(parent_mask) != keys:
            raise UserError(f"{out / round_mask_path(r.parent)} covers other keys than this run; delete {out} and rerun")
    mask = prune_to(parent_sd, parent_mask, r.sparsity)
    model = checkpoints.build_from_meta(model_cfg, data)
    check_trainable(mask, model, f"IMP round {r.round} (sparsity {fmt_sparsity(r.sparsity)}, on the way to target "
                                 f"sparsity {serves})")
    model.load_state_dict(rewind_sd if rewind_sd is not None else parent_sd)
    apply_mask_(model, mask)
    kept, total = mask_counts(mask)
    writer = distributed.writer()
    pruned_eval = evaluate(model.to(device), test_ds, device, ft_cfg.eval_batch_size)  # data-parallel: every rank
    if writer:
        log(f"IMP round {r.round} ({r.kind}{'' if r.target is None else ' S=' + fmt_sparsity(r.target)}): "
            f"sparsity {1 - kept / total:.6f} ({kept}/{total} kept), test acc after pruning {pruned_eval['acc']:.4f}")

    run_dir = out / r.run_dir
    final = run_dir / "final.pt"
    t0 = time.perf_counter()
    result = None
    if writer and (run_dir / "result.json").exists() and final.exists():
        # fine-tuning finished but the round files were not written (killed in between)
        result = io.read_json(run_dir / "result.json")
        if _config_diff(result.get("provenance", {}).get("config", {}).get("imp", {}), config):
            result = None  # left over from a run with other settings: redo
        else:
            model = checkpoints.model_from_checkpoint(final)
    if distributed.broadcast_ints([int(result is None)])[0]:
        round_tags = tags | {"imp_round": str(r.round), "imp_kind": r.kind, "round_sparsity": fmt_sparsity(r.sparsity)}
        torch.manual_seed(seed)
        result = fit(
            model, train_ds, test_ds, ft_cfg,
            out_dir=run_dir, mask=mask, data_seed=round_data_seed(data_seed, r.depth),
            model_cfg=model_cfg, data_meta=data, run_name=f"imp-round{r.round}", tags=round_tags,
            provenance_config={"imp": config, "round": r.as_dict()}, device=device, progress=progress,
            write_predictions=r.kind == "branch",
        )
    if not writer:
        return {}  # rank 0 writes the round's files
    model = model.cpu()
    stats = {"kept": kept, "realised": 1 - kept / total, "pruned_test_acc": pruned_eval["acc"],
             "test_acc": result["test_acc"], "seconds": time.perf_counter() - t0}
    report = sparsity_report(model, mask, r.sparsity) | {"stats": stats}
    round_prov = prov | {"round": r.as_dict()}
    # the mask is written first, the checkpoint last: its presence marks the round finished
    checkpoints.save_mask(out / round_mask_path(r.round), mask, model_cfg, data, report, round_prov)
    checkpoints.save_checkpoint(
        out / round_path(r.round), model, model_cfg, data, ft_cfg.epochs, round_prov,
        mask_sparsity=report["realised"], imp_round=r.as_dict(),
    )
    final.unlink(missing_ok=True)  # same weights as round{r}.pt; keep one copy
    return stats


def _write_target(r: Round, *, out: Path, schedule: list[Round], model_cfg: dict, data: dict, tags: dict,
                  prov: dict) -> None:
    """S{s}/: the branch round's mask, model, sparsity report, result and predictions."""
    d = out / target_dir(r.target)
    state_dict, mask = _load_round(out, r.round, model_cfg, data)
    model = checkpoints.build_from_meta(model_cfg, data)
    model.load_state_dict(state_dict)
    report = sparsity_report(model, mask, r.target)
    prunable = report["prunable"]
    short = unhonoured.sparsity(r.target, prunable["realised"], prunable["kept"], prunable["numel"],
                                f"target sparsity {fmt_sparsity(r.target)} ({out / target_dir(r.target)})")
    report["unhonoured"] = {"sparsity": short} if short else {}
    where = {"target": r.target, "round": r.round, "lineage": lineage(schedule, r.round)}
    run_dir = out / r.run_dir
    result = io.read_json(run_dir / "result.json")
    if "health" not in result:  # a round trained before health was recorded (sparsebasin.health)
        from ..training.record import flag_health
        flag_health(result, num_classes=int(data["num_classes"]), run_name=f"IMP S={fmt_sparsity(r.target)}")
    result["tags"] = {**result.get("tags", {}), **tags}
    for k in ("imp_round", "imp_kind", "round_sparsity"):
        result["tags"].pop(k, None)
    result["tags"].setdefault("sparsity", fmt_sparsity(r.target))
    result["tags"].setdefault("branch", "imp")
    result["imp"] = where
    result["sparsity_realised"] = report["realised"]  # measured on the mask, over the prunable weights
    if short:
        result["unhonoured"] = {"sparsity": short}
    result["sparsity_all_weights"] = report["weights"]["realised"]
    result["sparsity_all_params"] = report["all"]["realised"]
    _copy_atomic(run_dir / "predictions.pt", d / "predictions.pt")
    io.write_json(d / "result.json", result)
    target_prov = prov | {"round": r.as_dict()}
    checkpoints.save_checkpoint(d / "model.pt", model, model_cfg, data, int(result.get("epochs", 0)), target_prov,
                                mask_sparsity=report["realised"], imp_round=r.as_dict())
    io.write_json(d / "sparsity.json", report | where | {"provenance": target_prov})
    checkpoints.save_mask(d / "mask.pt", mask, model_cfg, data, report | where, target_prov)
