"""``fit``: train one model (dense or masked) and write its run directory.

Run directory (docs/architecture.md): ``ckpt/epoch{k}.pt`` for each requested
k (0 = the initialisation before any step, k = epochs completed),
``final.pt``, ``metrics.csv``, ``predictions.pt``, ``result.json`` (written
last, so its presence means the run finished) and the scratch
``.resume.pt`` while the run is in progress.
"""

from __future__ import annotations

import csv
import io as _io
import math
import time
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from .. import checkpoints, io, provenance
from .. import device as devices
from ..errors import TrainingDiverged, UserError
from ..evaluation import evaluate
from ..masking import BoundMask
from ..models import model_spec
from ..progress import EpochProgress, log, resolve_mode
from . import resume
from .config import TrainConfig
from .schedule import CosineSchedule

METRICS_COLUMNS = ("epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc", "test_top5", "seconds",
                   "images_per_s")
FINAL_OUTPUTS = ("result.json", "final.pt", "metrics.csv", "predictions.pt")


def check_save_epochs(save_epochs: Iterable[int], epochs: int) -> list[int]:
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


def drop_last_batch(n: int, batch_size: int) -> bool:
    # A trailing batch of one example breaks BatchNorm in train mode; drop only that case.
    return n > batch_size and n % batch_size == 1


def metrics_csv(rows: list[dict]) -> str:
    buf = _io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=METRICS_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: row[k] for k in METRICS_COLUMNS})
    return buf.getvalue()


def run_config_record(cfg: TrainConfig, model_cfg: dict, data_meta: Mapping, augment: bool, save_epochs: list[int],
                      n_train: int, n_test: int, steps_per_epoch: int, density: float | None,
                      extra: Mapping | None = None) -> dict:
    """The resolved configuration a run's provenance records (shared with fused runs)."""
    return {
        "train": cfg.to_dict(),
        "model": model_cfg,
        "data": dict(data_meta),
        "augment": augment,
        "save_epochs": save_epochs,
        "n_train": n_train,
        "n_test": n_test,
        "steps_per_epoch": steps_per_epoch,
        "density": density,
        "cpu_threads": torch.get_num_threads(),
        **(extra or {}),
    }


def checkpoint_extra(mask: Mapping[str, torch.Tensor] | None) -> dict:
    return {"mask_sparsity": 1.0 - checkpoints.mask_density(mask)} if mask else {}


def fit(
    model: nn.Module,
    train_ds: Any,
    test_ds: Any,
    cfg: TrainConfig,
    *,
    out_dir: str | Path,
    mask: Mapping[str, torch.Tensor] | None = None,
    data_seed: int = 0,
    save_epochs: Iterable[int] = (),
    model_cfg: dict,
    data_meta: dict,
    run_name: str,
    tags: dict | None = None,
    provenance_config: dict | None = None,
    device: str | torch.device = "auto",
    progress: str = "auto",
    write_predictions: bool = True,
    init_seed: int | None = None,
) -> dict:
    """Train ``model`` for ``cfg.epochs`` epochs, keeping masked weights exactly zero.

    Writes the run directory ``out_dir`` and returns the result dict (also
    ``result.json``). The model is trained in place (moved to ``device``).
    Restarting with the same arguments after a kill resumes from the last
    completed epoch and ends bit-identical on CPU. Raises TrainingDiverged on
    a NaN/inf loss, leaving no final output.
    """
    from ..data import batches, num_batches, num_examples

    cfg = cfg.validate()
    out = Path(out_dir)
    dev = devices.resolve(device)
    mode = resolve_mode(progress)
    save_epochs = check_save_epochs(save_epochs, cfg.epochs)
    model_cfg = model_spec(model_cfg)
    tags = dict(tags or {})
    if mask is not None:
        checkpoints.check_mask(mask, model, "mask")
    density = checkpoints.mask_density(mask) if mask else None
    augment = resolve_augment(cfg, train_ds)
    n_train = num_examples(train_ds)
    check_training_labels(train_ds, n_train, run_name)
    drop_last = drop_last_batch(n_train, cfg.batch_size)
    steps_per_epoch = num_batches(n_train, cfg.batch_size, drop_last)

    # Everything that determines the final weights, hashed before anything changes.
    fp = resume.fingerprint({
        "train": cfg.to_dict() | {"eval_batch_size": None},
        "model": model_cfg,
        "data": data_meta,
        "train_ds": resume.dataset_digest(train_ds),
        "test_ds": resume.dataset_digest(test_ds),
        "data_seed": int(data_seed),
        "init": resume.tensor_digest(model.state_dict()),
        "mask": resume.tensor_digest(dict(mask)) if mask else None,
        "augment": augment,
        "save_epochs": save_epochs,
        "device": dev.type,
    })
    prov = provenance.collect(
        config=run_config_record(cfg, model_cfg, data_meta, augment, save_epochs, n_train, num_examples(test_ds),
                                 steps_per_epoch, density, provenance_config),
        seeds={"init": init_seed, "data": int(data_seed)},
        device=dev,
    )

    if dev.type == "cuda":  # in-memory datasets move once (ImageFolderData.to is a no-op)
        train_ds, test_ds = (ds.to(dev) if hasattr(ds, "to") else ds for ds in (train_ds, test_ds))
    model = devices.prepare_model(model, dev)
    conv = devices.is_conv_model(model)
    bound = BoundMask(model, mask) if mask else None
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                weight_decay=cfg.weight_decay, nesterov=cfg.nesterov)
    schedule = CosineSchedule(optimizer, cfg.lr, cfg.epochs * steps_per_epoch,
                              warmup_steps=round(cfg.warmup_epochs * steps_per_epoch))

    resume_path = out / resume.FILENAME
    io.ensure_parent_writable(resume_path)
    for name in FINAL_OUTPUTS:  # stale outputs of an earlier run must not pass for this one's
        (out / name).unlink(missing_ok=True)

    state = resume.load(resume_path, fp, run_name)
    if state is not None:
        start = resume.restore(state, model, optimizer, schedule)
        rows: list[dict] = list(state["rows"])
        log(f"{run_name}: resuming after epoch {start}/{cfg.epochs} from {resume_path}")
    else:
        rows, start = [], 0
    if bound is not None:
        bound.apply_()
        bound.mask_optimizer_state_(optimizer)
    if start == 0 and 0 in save_epochs:
        checkpoints.save_checkpoint(out / "ckpt" / "epoch0.pt", model, model_cfg, data_meta, 0, prov, **checkpoint_extra(mask))

    check_every = 1 if dev.type == "cpu" else 25
    final_eval = None
    for epoch in range(start, cfg.epochs):
        done = epoch + 1
        model.train()
        t0 = time.perf_counter()
        lr_first = schedule.lr
        loss_sum = torch.zeros((), dtype=torch.float64, device=dev)
        correct = torch.zeros((), dtype=torch.int64, device=dev)
        seen = 0
        bar = EpochProgress(f"{run_name} epoch {done}/{cfg.epochs}", steps_per_epoch, mode)
        it = batches(train_ds, cfg.batch_size, shuffle=True, data_seed=data_seed, epoch=epoch, augment=augment,
                     device=dev, drop_last=drop_last)
        for i, (x, y) in enumerate(it):
            schedule.apply()
            x = devices.to_input(x, dev, conv)
            y = y.to(dev, non_blocking=True)
            with devices.autocast(dev):
                logits = model(x)
            loss = F.cross_entropy(logits.float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if bound is not None:
                bound.mask_grads_()
            optimizer.step()
            if bound is not None:
                bound.after_step_(optimizer)
            schedule.step()
            with torch.no_grad():
                loss_sum += loss.detach().double() * y.numel()
                correct += (logits.argmax(1) == y).sum()
            seen += y.numel()
            if (i + 1) % check_every == 0 or i + 1 == steps_per_epoch:
                running = loss_sum.item() / seen
                if not math.isfinite(running):
                    raise TrainingDiverged(
                        f"run {run_name} diverged in epoch {done}: training loss is {running}; "
                        "lower --lr or check the inputs, then rerun (no final output was written)"
                    )
                bar.update(i + 1 - bar.n, loss=running, lr=schedule.lr)
        train_seconds = time.perf_counter() - t0
        if seen == 0:
            raise UserError(f"run {run_name}: epoch {done} produced no batches; check the dataset")
        last = done == cfg.epochs
        ev = evaluate(model, test_ds, dev, cfg.eval_batch_size, return_logits=last and write_predictions)
        if last:
            final_eval = ev
        row = {
            "epoch": done,
            "lr": lr_first,
            "train_loss": loss_sum.item() / seen,
            "train_acc": correct.item() / seen,
            "test_loss": ev["loss"],
            "test_acc": ev["acc"],
            "test_top5": ev["top5"],
            "seconds": time.perf_counter() - t0,
            "images_per_s": seen / train_seconds if train_seconds > 0 else float("nan"),
        }
        rows.append(row)
        if done in save_epochs:
            checkpoints.save_checkpoint(out / "ckpt" / f"epoch{done}.pt", model, model_cfg, data_meta, done, prov,
                                        **checkpoint_extra(mask))
        resume.save(resume_path, fingerprint=fp, epoch=done, model=model.state_dict(),
                    optimizer=optimizer.state_dict(), schedule=schedule.state_dict(), rows=rows, provenance=prov)
        bar.close(
            f"{run_name} epoch {done}/{cfg.epochs} lr={lr_first:.4g} train_loss={row['train_loss']:.4f} "
            f"train_acc={row['train_acc']:.4f} test_loss={row['test_loss']:.4f} test_acc={row['test_acc']:.4f} "
            f"{row['seconds']:.1f}s {row['images_per_s']:.0f} img/s"
        )

    if final_eval is None:  # resumed after the last epoch had finished
        final_eval = evaluate(model, test_ds, dev, cfg.eval_batch_size, return_logits=write_predictions)
    checkpoints.save_checkpoint(out / "final.pt", model, model_cfg, data_meta, cfg.epochs, prov, **checkpoint_extra(mask))
    io.write_text(out / "metrics.csv", metrics_csv(rows))
    if write_predictions:
        io.save_artifact(out / "predictions.pt", "predictions", {
            "logits": final_eval["logits"].float().cpu(),
            "labels": final_eval["labels"].long().cpu(),
        }, prov)
    last_row = rows[-1]
    result = {
        "run": run_name,
        "tags": tags,
        "test_acc": final_eval["acc"],
        "test_top5": final_eval["top5"],
        "test_loss": final_eval["loss"],
        "train_loss": last_row["train_loss"],
        "train_acc": last_row["train_acc"],
        "epochs": cfg.epochs,
        "density": density,
        "train_seconds": sum(r["seconds"] for r in rows),
        "provenance": prov,
    }
    io.write_json(out / "result.json", result)
    resume.remove(resume_path)
    return result


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
