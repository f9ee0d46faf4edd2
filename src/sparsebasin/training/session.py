"""The training skeleton for one run or a fused group of runs.

``train_runs`` owns everything around the optimisation step, once, for both
the single-model trainer (``fit``) and the fused engine (``fit_fused``):
fingerprints and provenance, the run-directory lock and the finished-run
rules (``record.RunRecord``), the resume file, staged rewind checkpoints,
the per-epoch metrics rows, the divergence check and the final writes in
order (``result.json`` last). An *engine* is the part that differs: it holds
the model(s) and optimizer state and knows how to run one step, evaluate
and hand out state dicts (``engines.SingleEngine``, ``fused.StackedEngine``).

Every member's numbers are those of a separate run: the engines keep per-run
semantics (loss, data order, masks, optimizer state), and a rerun resumes
from the last finished epoch (bit-identical on CPU; on CUDA with
``deterministic`` settings only, see docs/performance.md).
"""

from __future__ import annotations

import contextlib
import io
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from .. import checkpoints, compiling, distributed, provenance, rundir, tracking, unhonoured
from .. import device as devices
from ..errors import TrainingDiverged, UserError
from ..models import model_spec
from ..progress import EpochProgress, log, resolve_mode
from . import resume
from .config import TrainConfig
from .record import RunRecord, class_counts, flag_health, remove_scratch
from .schedule import make_schedule


@dataclass
class Member:
    """One run of a session: its initial model, directory, mask, data order and labels."""

    model: nn.Module
    out_dir: Path
    run_name: str
    data_seed: int = 0
    mask: Mapping[str, torch.Tensor] | None = None
    tags: dict = field(default_factory=dict)
    provenance_config: dict = field(default_factory=dict)
    init_seed: int | None = None


def check_save_epochs(save_epochs, epochs: int) -> list[int]:
    """Sorted unique epochs in [0, epochs], or one line saying which is out of range."""
    out = sorted({int(e) for e in save_epochs})
    bad = [e for e in out if e < 0 or e > epochs]
    if bad:
        raise UserError(f"--save-epochs {bad} outside 0..{epochs} (0 = init, {epochs} = last epoch); fix the list")
    return out


def resolve_augment(cfg: TrainConfig, ds: Any) -> bool:
    if cfg.augment == "auto":
        info = getattr(ds, "info", None)
        return bool(getattr(info, "augment", False))
    return cfg.augment == "on"


def drop_last_batch(n: int, batch_size: int, world: int = 1) -> bool:
    # A trailing batch of one example breaks BatchNorm in train mode, and one smaller than the number of
    # processes leaves a rank without examples: drop only those cases.
    return n > batch_size and 0 < n % batch_size < max(2, world)


def check_training_labels(train_ds, n_train: int, run_name: str) -> None:
    """An empty or single-class training set would "train" to a meaningless result: refuse it."""
    name = getattr(getattr(train_ds, "info", None), "name", "?")
    source = (getattr(train_ds, "meta", None) or {}).get("source")
    where = f"dataset {name!r}" + (f" ({source})" if source else "")
    if n_train < 1:
        raise UserError(f"run {run_name}: the training split of {where} is empty; check the data files or rerun prepare")
    if isinstance(getattr(train_ds, "y", None), torch.Tensor):
        classes = int(torch.unique(train_ds.y).numel())
    else:
        classes = len({label for _, label in getattr(train_ds, "samples", [])}) or 2
    if classes < 2:
        raise UserError(f"run {run_name}: the training split of {where} has a single class; check the data files or rerun prepare")


def trained_precision(cfg: TrainConfig, dev: torch.device, engine_name: str) -> str:
    """The precision the training step runs in: the request where the device applies it (bf16 autocast is
    CUDA-only; the fused MLP engine never autocasts), else fp32."""
    return "fp32" if engine_name == "mlp" else devices.effective_precision(dev, cfg.precision)


def run_config_record(cfg: TrainConfig, model_cfg: dict, data_meta: Mapping, augment: bool, save_epochs: list[int],
                      n_train: int, n_test: int, steps_per_epoch: int, density: float | None,
                      extra: Mapping | None = None, precision: str | None = None) -> dict:
    """The resolved configuration a run's provenance records: ``train.precision`` is the one it trained in
    (``precision``), ``train.precision_requested`` the preset's or command line's request."""
    train = cfg.to_dict()
    if precision is not None:
        train = {**train, "precision": precision, "precision_requested": cfg.precision}
    return {
        "train": train,
        "model": model_cfg,
        "data": dict(data_meta),
        "augment": augment,
        "save_epochs": save_epochs,
        "n_train": n_train,
        "n_test": n_test,
        "steps_per_epoch": steps_per_epoch,
        "density": density,
        "cpu_threads": torch.get_num_threads(),
        # how reproducible and how fast the kernels were: like the thread count, they may move the last bits
        # but never make it another run (not in the request: toggling them reruns nothing)
        **({"deterministic": True} if devices.deterministic() else {}),
        **({"compile": compiling.mode()} if compiling.mode() != "none" else {}),
        **(extra or {}),
    }


def checkpoint_extra(mask: Mapping[str, torch.Tensor] | None) -> dict:
    return {"mask_sparsity": 1.0 - checkpoints.mask_density(mask)} if mask else {}


def run_request(cfg: TrainConfig, model_cfg: dict, data_meta: Mapping, train_ds, test_ds, member: Member,
                augment: bool, save_epochs: list[int], device: torch.device) -> dict:
    """Everything that determines a run's final weights (hashed into its fingerprint)."""
    return {
        "train": cfg.key_dict() | {"eval_batch_size": None},
        "model": model_cfg,
        "data": dict(data_meta),
        "train_ds": resume.dataset_digest(train_ds),
        "test_ds": resume.dataset_digest(test_ds),
        "data_seed": int(member.data_seed),
        "init": resume.tensor_digest(member.model.state_dict()),
        "mask": resume.tensor_digest(dict(member.mask)) if member.mask else None,
        "augment": augment,
        "save_epochs": save_epochs,
        "device": device.type,
        **({"processes": distributed.world()} if distributed.active() else {}),
        **({"sync_bn": True} if distributed.sync_bn() else {}),
    }


def train_runs(
    members: Sequence[Member],
    train_ds: Any,
    test_ds: Any,
    cfg: TrainConfig,
    *,
    model_cfg: dict,
    data_meta: dict,
    make_engine,
    engine_name: str,
    save_epochs=(),
    device: str | torch.device = "auto",
    progress: str = "auto",
    write_predictions: bool = True,
    force: bool | str = False,
    scratch: str | Path | None = None,
    group_name: str | None = None,
) -> list[dict]:
    """Train every member for ``cfg.epochs`` epochs and write its run directory; returns the results.

    ``force``: True replaces finished runs made with other arguments; "stale" only those whose inputs
    (init, mask, data) or rewind checkpoints changed since (``RunRecord.rebuildable``; the workflow's mode).

    ``make_engine(members, dev, augment, drop_last)`` builds the engine for
    the members that still need training.
    """
    from ..data import num_batches, num_examples

    cfg = cfg.validate()
    members = list(members)
    runs = len(members)
    if runs < 1:
        raise UserError("training needs at least one run")
    outs = [Path(m.out_dir) for m in members]
    if len({o.resolve() for o in outs}) != runs:
        raise UserError("the runs of a group must have distinct --out-dir directories")
    dev = devices.resolve(device)
    mode = resolve_mode(progress)
    save_epochs = check_save_epochs(save_epochs, cfg.epochs)
    model_cfg = model_spec(model_cfg)
    fused = engine_name != "single"
    for m in members:
        if m.mask is not None:
            checkpoints.check_mask(m.mask, m.model, f"mask of {m.run_name}")
    augment = resolve_augment(cfg, train_ds)
    n_train, n_test = num_examples(train_ds), num_examples(test_ds)
    label = group_name or (members[0].run_name if not fused else f"fused[{runs}]")
    check_training_labels(train_ds, n_train, label)
    distributed.check_batch(cfg.batch_size)
    drop_last = drop_last_batch(n_train, cfg.batch_size, distributed.world())
    steps_per_epoch = num_batches(n_train, cfg.batch_size, drop_last)
    short = {"batch_size": unhonoured.batch_size(cfg.batch_size, n_train, f"{label}: --batch-size"),
             "epoch_examples": unhonoured.epoch_examples(n_train, cfg.batch_size, drop_last, f"{label}: examples/epoch")}
    short = {k: v for k, v in short.items() if v}  # settings it cannot honour, said and recorded in provenance

    precision = trained_precision(cfg, dev, engine_name)

    def make_records(each_save_epochs):
        out = []
        for r, (m, save_epochs) in enumerate(zip(members, each_save_epochs)):
            # The request keeps the requested precision: it is hashed into the fingerprint that decides
            # "already finished", so runs finished before the trained precision was recorded still count.
            request = run_request(cfg, model_cfg, data_meta, train_ds, test_ds, m, augment, save_epochs, dev)
            density = checkpoints.mask_density(m.mask) if m.mask else None
            extra = dict(m.provenance_config or {})
            if short:
                extra["unhonoured"] = {**extra.get("unhonoured", {}), **short}
            if fused:
                extra["fused"] = {"runs": runs, "index": r, "engine": engine_name, "group": [str(o) for o in outs]}
            prov = provenance.collect(
                config=run_config_record(cfg, model_cfg, data_meta, augment, save_epochs, n_train, n_test,
                                         steps_per_epoch, density, extra, precision=precision),
                seeds={"init": m.init_seed, "data": int(m.data_seed)},
                device=dev,
            )
            out.append(RunRecord(m.out_dir, m.run_name, resume.fingerprint(request), request, prov, m.tags,
                                 save_epochs, write_predictions, m.mask))
        return out

    records = make_records([save_epochs] * runs)
    writer = distributed.writer()  # the other ranks of a data-parallel run follow rank 0's decisions
    with rundir.locked(outs) if writer else contextlib.nullcontext():
        results: list[dict | None] = [None] * runs
        # a run trained again for a new rewind checkpoint keeps every one it had (another config may need them)
        keep = [[0] * (cfg.epochs + 1) for _ in members]
        if writer:
            for r, rec in enumerate(records):
                state, res = rec.status()
                for e in rec.kept_epochs(res) if state == "more" else ():
                    keep[r][e] = 1
        flat = distributed.broadcast_ints([k for row in keep for k in row])
        each = [sorted(set(save_epochs) | {e for e in range(cfg.epochs + 1) if flat[r * (cfg.epochs + 1) + e]})
                for r in range(runs)]
        if any(e != save_epochs for e in each):
            records = make_records(each)
            save_epochs = sorted(set().union(*each))  # the epochs the group stages; each run keeps its own
        if writer:
            status = [rec.status() for rec in records]
            if force is not True:
                for rec, (state, result) in zip(records, status):
                    if state != "other":
                        continue
                    if force != "stale" or not rec.rebuildable(result):
                        raise rec.refusal(result)
                    log(f"{rec.out}: {rec.rebuild_reason(result)}; training it again (its files stay until the new "
                        "run has finished)")
            for rec, (state, res) in zip(records, status):
                if state == "more":
                    missing = [k for k in rec.save_epochs if not rec.checkpoint_path(k).is_file()]
                    log(f"{rec.out}: finished, but without the rewind checkpoint(s) {missing} now asked for; training "
                        f"it again to keep epochs {rec.save_epochs} (its files stay until the new run has finished)")
            results = [rec.reuse(res) if state == "same" else None for rec, (state, res) in zip(records, status)]
            for i, res in enumerate(results):
                if res is None and status[i][0] == "new":
                    records[i].clean_unfinished()
        flags = distributed.broadcast_ints([int(res is None) for res in results])
        todo = [i for i, f in enumerate(flags) if f]
        if not todo:
            return results
        if fused and len(todo) < runs and writer:  # a group trains only what is not finished
            log(f"{label}: training {len(todo)} of {runs} runs ({', '.join(str(members[i].out_dir) for i in todo)}); "
                f"the other {runs - len(todo)} are finished")
        trained = _train(
            [members[i] for i in todo], [records[i] for i in todo], train_ds, test_ds, cfg,
            model_cfg=model_cfg, data_meta=data_meta, make_engine=make_engine, engine_name=engine_name, dev=dev,
            mode=mode, augment=augment, drop_last=drop_last, steps_per_epoch=steps_per_epoch,
            save_epochs=save_epochs, scratch=scratch, label=label, fused=fused,
        )
        for i, res in zip(todo, trained):
            results[i] = res
        return results


def _train(members, records, train_ds, test_ds, cfg, *, model_cfg, data_meta, make_engine, engine_name, dev, mode,
           augment, drop_last, steps_per_epoch, save_epochs, scratch, label, fused) -> list[dict]:
    runs = len(members)
    if fused:
        fp = resume.fingerprint({"fused": engine_name, "runs": [r.fingerprint for r in records],
                                 "outs": [str(r.out) for r in records]})
        scratch_path = Path(scratch) if scratch is not None else records[0].out / ".fused.resume.pt"
    else:
        fp = records[0].fingerprint
        scratch_path = Path(scratch) if scratch is not None else records[0].out / resume.FILENAME

    if dev.type == "cuda":  # in-memory datasets move once (ImageFolderData.to is a no-op)
        train_ds, test_ds = (ds.to(dev) if hasattr(ds, "to") else ds for ds in (train_ds, test_ds))
    engine = make_engine(members, dev, train_ds, augment, drop_last)
    schedule = make_schedule(cfg, engine.optimizer, steps_per_epoch)

    writer = distributed.writer()
    state = resume.load(scratch_path, fp, label) if writer else None
    start_at = distributed.broadcast_ints([int(state["epoch"]) if state is not None else -1])[0]
    if not writer and start_at >= 0:  # the same file rank 0 resumes from; it cannot change before our first step
        state = resume.load(scratch_path, fp, label)
        if state is None or int(state["epoch"]) != start_at:
            raise UserError(f"{label}: rank {distributed.rank()} cannot read the resume file {scratch_path} rank 0 "
                            "resumes from; put the run directory on a filesystem every rank sees")
    if state is not None:
        engine.load_scratch(state)
        schedule.load_state_dict(state["schedule"])
        resume.set_rng_state(state["rng"])
        start = int(state["epoch"])
        rows: list[list[dict]] = [list(x) for x in state["rows"]]
        log(f"{label}: resuming after epoch {start}/{cfg.epochs} from {scratch_path}")
    else:
        start, rows = 0, [[] for _ in range(runs)]
        for rec in records if writer else ():
            rec.discard_staging()  # rewind checkpoints of another request, or of a replaced run's attempt
    engine.start()
    trackers = [tracking.for_run(m.run_name, rec.out, m.tags, rec.provenance) if writer else tracking.Tracker("none", "")
                for m, rec in zip(members, records)]
    for tracker, r_rows in zip(trackers, rows):  # a resumed run's tracked run gets its whole curve
        for row in r_rows:
            tracker.epoch(row, row["epoch"])
    try:
        return _epochs(members, records, engine, schedule, trackers, train_ds, test_ds, cfg, start=start, rows=rows,
                       model_cfg=model_cfg, data_meta=data_meta, dev=dev, mode=mode, steps_per_epoch=steps_per_epoch,
                       save_epochs=save_epochs, label=label, fused=fused, scratch_path=scratch_path, fp=fp)
    finally:
        for tracker in trackers:
            tracker.finish()


def _epochs(members, records, engine, schedule, trackers, train_ds, test_ds, cfg, *, start, rows, model_cfg,
            data_meta, dev, mode, steps_per_epoch, save_epochs, label, fused, scratch_path, fp) -> list[dict]:
    """The epochs from ``start``, then the final writes (rank 0)."""
    runs, writer = len(members), distributed.writer()
    extras = [checkpoint_extra(m.mask) for m in members]
    if start == 0 and 0 in save_epochs and writer:
        for rec, sd, extra in zip(records, engine.state_dicts(), extras):
            if 0 in rec.save_epochs:
                rec.stage_checkpoint(0, sd, model_cfg, data_meta, extra)

    final_evals = None
    for epoch in range(start, cfg.epochs):
        done = epoch + 1
        engine.train()
        t0 = time.perf_counter()
        lr_first = schedule.lr
        bar = EpochProgress(f"{label} epoch {done}/{cfg.epochs}", steps_per_epoch, mode,
                            stream=None if writer else io.StringIO())
        loss_sum, correct, seen = train_epoch(engine, schedule, epoch, steps_per_epoch, [m.run_name for m in members],
                                              bar)
        if distributed.active():  # every rank's shard: the epoch's sums over the global batches
            loss_sum, correct, total = distributed.all_sum_many(loss_sum, correct, torch.tensor([float(seen)], device=dev))
            correct, seen = correct.round().long(), int(total)
        train_seconds = time.perf_counter() - t0
        if seen == 0:
            raise UserError(f"run {label}: epoch {done} produced no batches; check the dataset")
        engine.end_epoch()
        last = done == cfg.epochs
        # data-parallel: every rank evaluates its shard of the test set (sparsebasin.evaluation); rank 0 writes
        evs = engine.evaluate(test_ds, cfg.eval_batch_size, return_logits=last and records[0].write_predictions)
        if last:
            final_evals = evs
        seconds = time.perf_counter() - t0
        train_losses = (loss_sum / seen).tolist()
        train_accs = (correct.double() / seen).tolist()
        rate = seen * runs / train_seconds if train_seconds > 0 else float("nan")
        for r in range(runs):
            rows[r].append({
                "epoch": done,
                "lr": lr_first,
                "train_loss": train_losses[r],
                "train_acc": train_accs[r],
                "test_loss": evs[r]["loss"],
                "test_acc": evs[r]["acc"],
                "test_top5": evs[r]["top5"],
                "seconds": seconds / runs,
                "images_per_s": rate,
            })
            trackers[r].epoch(rows[r][-1], done)
        if not writer:
            continue
        if done in save_epochs:
            for rec, sd, extra in zip(records, engine.state_dicts(), extras):
                if done in rec.save_epochs:
                    rec.stage_checkpoint(done, sd, model_cfg, data_meta, extra)
        resume.save(scratch_path, fingerprint=fp, epoch=done, model=engine.scratch_model(),
                    optimizer=engine.optimizer.state_dict(), schedule=schedule.state_dict(), rows=rows,
                    provenance=records[0].provenance)
        if runs == 1 and not fused:
            row = rows[0][-1]
            summary = (f"{label} epoch {done}/{cfg.epochs} lr={lr_first:.4g} train_loss={row['train_loss']:.4f} "
                       f"train_acc={row['train_acc']:.4f} test_loss={row['test_loss']:.4f} "
                       f"test_acc={row['test_acc']:.4f} {row['seconds']:.1f}s {row['images_per_s']:.0f} img/s")
        else:
            accs = " ".join(f"{a['acc']:.4f}" for a in evs)
            summary = (f"{label} epoch {done}/{cfg.epochs} lr={lr_first:.4g} "
                       f"train_loss={sum(train_losses) / runs:.4f} test_acc=[{accs}] {seconds:.1f}s "
                       f"{rate:.0f} img/s (all runs)")
        bar.close(summary)

    if final_evals is None:  # resumed after the last epoch had finished
        final_evals = engine.evaluate(test_ds, cfg.eval_batch_size, return_logits=records[0].write_predictions)
    if not writer:
        return [None] * runs
    results = []
    densities = [checkpoints.mask_density(m.mask) if m.mask else None for m in members]
    counts = None
    for rec, sd, ev, r_rows, extra, density in zip(records, engine.state_dicts(), final_evals, rows, extras, densities):
        result = rec.write_outputs(sd, ev, r_rows, cfg.epochs, model_cfg, data_meta, extra, density)
        result["precision"] = rec.provenance["config"]["train"]["precision"]  # what it trained in
        result["precision_requested"] = cfg.precision
        counts = counts or class_counts(test_ds, ev)
        results.append(flag_health(result, num_classes=int(data_meta["num_classes"]), n_test=int(ev["n"]),
                                   counts=counts, run_name=rec.run_name))
    for rec, result, tracker in zip(records, results, trackers):  # result.json last: it means finished
        rec.finish(result)
        tracker.result(result)
    remove_scratch(scratch_path)
    return results



def train_epoch(engine, schedule, epoch: int, steps_per_epoch: int, names: Sequence[str],
                bar: EpochProgress) -> tuple[torch.Tensor, torch.Tensor, int]:
    """One epoch of steps: (per-run summed loss and correct counts on the device, examples seen).

    The host reads the loss only every ``engine.check_every`` steps (the
    divergence check and the progress bar): on a GPU each read waits for the
    queue to drain. ``benchmarks/gpu_check.py`` audits that nothing else here
    waits.
    """
    runs = len(names)
    loss_sum = torch.zeros(runs, dtype=torch.float64, device=engine.dev)
    correct = torch.zeros(runs, dtype=torch.int64, device=engine.dev)
    seen = 0
    done = epoch + 1
    for i, (x, y) in enumerate(engine.batches(epoch)):
        schedule.apply()
        losses, c, b = engine.step(x, y)
        schedule.step()
        with torch.no_grad():
            loss_sum += losses.double() * b
            correct += c
        seen += b
        if (i + 1) % engine.check_every == 0 or i + 1 == steps_per_epoch:
            running = (loss_sum / seen).tolist()
            bad = [names[r] for r, v in enumerate(running) if not math.isfinite(v)]
            if bad:
                raise TrainingDiverged(
                    f"run {', '.join(bad)} diverged in epoch {done}: training loss is "
                    f"{running[0] if runs == 1 else 'not finite'}; lower --lr or check the inputs, then rerun "
                    "(no final output was written)")
            bar.update(i + 1 - bar.n, loss=sum(running) / runs, lr=schedule.lr)
    return loss_sum, correct, seen
