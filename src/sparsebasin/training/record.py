"""One run's directory, from the first check to the last write (shared by single and fused training).

Layout (docs/architecture.md): ``final.pt``, ``ckpt/epoch{k}.pt``,
``metrics.csv``, ``predictions.pt`` and ``result.json``, written in that order
when the run has finished, ``result.json`` last: its presence, with every
other output, means the run finished. ``result.json`` records the run's
fingerprint (a hash of everything that determines the weights) and the
request it hashes, so a rerun knows whether it asks for the same run.

A rerun of a directory:

- finished with the same request: nothing to do ("already finished");
- finished with another request: refused, naming what differs, unless
  ``force``; a forced run keeps every old file until it has finished, then
  replaces them (rewind checkpoints are staged in ``.staging/`` meanwhile);
- unfinished (killed, or its outputs deleted by Snakemake before a rerun):
  the new attempt cleans the earlier attempt's outputs, once it holds the
  directory's lock (``rundir.locked``), or resumes it when the request is
  the same (``.resume.pt``).
"""

from __future__ import annotations

import csv
import io as _io
import os
import shutil
from pathlib import Path
from typing import Mapping

from .. import checkpoints, health, io
from ..errors import UserError
from ..progress import log

METRICS_COLUMNS = ("epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc", "test_top5", "seconds",
                   "images_per_s")
FINAL_OUTPUTS = ("result.json", "final.pt", "metrics.csv", "predictions.pt")
STAGING = ".staging"
SCRATCH_NAMES = (".resume.pt", ".fused.resume.pt")  # a separate run's and a fused group's resume files


def metrics_csv(rows: list[dict]) -> str:
    """The per-epoch rows; a non-finite value (an exploded test loss) is an empty cell, never a number."""
    buf = _io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=METRICS_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: io.finite_or_none(row[k]) for k in METRICS_COLUMNS})
    return buf.getvalue()


def class_counts(test_ds, final_eval: Mapping | None = None) -> list[int] | None:
    """Test examples per class (for the chance level of ``health``): from the evaluated labels, else the
    dataset's in-memory labels; None when neither is at hand (then chance is 1/num_classes)."""
    import torch

    labels = (final_eval or {}).get("labels")
    if not isinstance(labels, torch.Tensor) or not labels.numel():
        labels = getattr(test_ds, "y", None)
    if isinstance(labels, torch.Tensor) and labels.numel():
        return torch.bincount(labels.detach().to("cpu", torch.long).reshape(-1)).tolist()
    return None


def flag_health(result: dict, *, num_classes: int, n_test: int | None = None, counts=None,
                run_name: str | None = None) -> dict:
    """Add ``health`` (``sparsebasin.health``: ok, chance or exploded, with reasons) to a result dict and
    say it in one warning line when the run is flagged. ``n_test`` defaults to the run's recorded one."""
    if n_test is None:
        n_test = ((result.get("provenance") or {}).get("config") or {}).get("n_test") or 0
    result["health"] = health.assess(test_acc=result.get("test_acc"), test_loss=result.get("test_loss"),
                                     num_classes=num_classes, n_test=int(n_test), class_counts=counts)
    line = health.warning_line(run_name or result.get("run") or "run", result["health"])
    if line:
        log(line)
    return result


def request_diff(old: Mapping, new: Mapping, prefix: str = "") -> list[str]:
    """What differs between two requests, as ``key old -> new`` (digests shortened)."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if a == b:
            continue
        name = f"{prefix}{key}"
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out += request_diff(a, b, f"{name}.")
        else:
            def short(v):
                return f"{v[:8]}…" if isinstance(v, str) and len(v) == 64 else repr(v)
            out.append(f"{name} {short(a)} -> {short(b)}")
    return out


class RunRecord:
    """The bookkeeping of one run directory: status, staged checkpoints, final writes."""

    def __init__(self, out_dir: str | Path, run_name: str, fingerprint: str, request: dict, provenance: dict,
                 tags: Mapping, save_epochs: list[int], write_predictions: bool = True,
                 mask: Mapping | None = None):
        self.out = Path(out_dir)
        self.mask = mask
        self.run_name = run_name
        self.fingerprint = fingerprint
        self.request = request
        self.provenance = provenance
        self.tags = dict(tags)
        self.save_epochs = list(save_epochs)
        self.write_predictions = write_predictions

    # ------------------------------------------------------------ status --
    # What a request says a run keeps rather than what it is: a finished run with more rewind checkpoints than
    # asked is the run asked for (another config on the same tree may need the others).
    KEPT = ("save_epochs",)

    def final_outputs(self) -> list[Path]:
        """What a finished run has whatever rewind checkpoints it keeps (``status`` checks those)."""
        return [self.out / n for n in FINAL_OUTPUTS if self.write_predictions or n != "predictions.pt"]

    def checkpoint_path(self, epoch: int) -> Path:
        return self.out / "ckpt" / f"epoch{int(epoch)}.pt"

    def finished_result(self) -> dict | None:
        """The recorded result if every final output of a finished run is there (rewind checkpoints aside), else None."""
        if not all(p.is_file() for p in self.final_outputs()):
            return None
        try:
            result = io.read_json(self.out / "result.json")
        except UserError:
            return None
        return result if isinstance(result, dict) else None

    def _same_run(self, result: dict) -> bool:
        old = result.get("request")
        if not isinstance(old, Mapping):
            return result.get("fingerprint") == self.fingerprint
        from .resume import fingerprint

        def core(request):
            return {k: v for k, v in request.items() if k not in self.KEPT}

        return fingerprint(core(old)) == fingerprint(core(self.request))

    def status(self) -> tuple[str, dict | None]:
        """("new" | "same" | "more" | "other", the finished result). "more": the run asked for, finished, but
        without some rewind checkpoint now asked for (it is trained again, keeping every checkpoint it had)."""
        result = self.finished_result()
        if result is None:
            return "new", None
        if not self._same_run(result):
            return "other", result
        missing = [k for k in self.save_epochs if not self.checkpoint_path(k).is_file()]
        return ("more" if missing else "same"), result

    def kept_epochs(self, result: dict) -> list[int]:
        """The rewind checkpoints a finished run kept (to keep them when it is trained again)."""
        recorded = (result.get("request") or {}).get("save_epochs") or []
        return sorted({int(e) for e in recorded if self.checkpoint_path(e).is_file()})

    # What may differ between a finished run and a new request of the same directory for the workflow to train
    # it again: the content of its inputs (a dense run rebuilt on a GPU gives other bits, new data), or the rewind
    # checkpoints it keeps (a new study needs another one). Everything else is in the directory's key, so a
    # difference there is never a reason to replace a run silently.
    REBUILDABLE = ("init", "mask", "train_ds", "test_ds", "save_epochs")  # save_epochs: when inputs changed too

    def _differs(self, result: dict) -> set[str]:
        old = result.get("request") or {}
        return {k for k in set(old) | set(self.request) if old.get(k) != self.request.get(k)}

    def rebuildable(self, result: dict) -> bool:
        return bool(result.get("request")) and self._differs(result) <= set(self.REBUILDABLE)

    def rebuild_reason(self, result: dict) -> str:
        return "finished with other " + ", ".join(sorted(self._differs(result))) + " than asked now"

    def refusal(self, result: dict) -> UserError:
        diff = request_diff(result.get("request") or {}, self.request)
        what = "; ".join(diff[:4]) if diff else "it was made by another version of sparsebasin"
        return UserError(f"{self.out} holds a finished run made with other arguments ({what}); rerun with "
                         "--force to replace it (its files go only once the new run has finished), or choose "
                         "another --out-dir")

    def reuse(self, result: dict) -> dict:
        """A finished run asked for again: nothing to train; tags are brought up to date, and a result
        written before ``health`` existed gets it (from its recorded accuracy, loss and test size)."""
        num_classes = (self.request.get("data") or {}).get("num_classes")
        unflagged = "health" not in result and bool(num_classes)
        if result.get("tags") != self.tags or unflagged:
            result = {**result, "tags": self.tags}
            if unflagged:
                flag_health(result, num_classes=int(num_classes), run_name=self.run_name)
            io.write_json(self.out / "result.json", result)
        log(f"{self.run_name}: already finished in {self.out} (same arguments); nothing to do")
        return result

    def clean_unfinished(self) -> None:
        """Remove what an unfinished earlier attempt left (call with the lock held, not when forcing)."""
        for name in FINAL_OUTPUTS:
            (self.out / name).unlink(missing_ok=True)

    def discard_staging(self) -> None:
        shutil.rmtree(self.out / STAGING, ignore_errors=True)

    # ------------------------------------------------------------ writes --
    def stage_checkpoint(self, epoch: int, state_dict: Mapping, model_cfg: dict, data_meta: dict,
                         extra: Mapping) -> None:
        path = self.out / STAGING / "ckpt" / f"epoch{int(epoch)}.pt"
        checkpoints.save_checkpoint(path, state_dict, model_cfg, data_meta, epoch, self.provenance, **extra)

    def write_outputs(self, state_dict: Mapping, final_eval: Mapping, rows: list[dict], epochs: int,
                      model_cfg: dict, data_meta: dict, extra: Mapping, density: float | None) -> dict:
        """Every output but result.json (which ``finish`` writes last); returns the result dict."""
        staged = self.out / STAGING / "ckpt"
        for k in self.save_epochs:
            src = staged / f"epoch{k}.pt"
            if not src.exists():
                raise UserError(f"{self.run_name}: the staged checkpoint {src} is missing; delete {self.out / STAGING}"
                                " and rerun")
            _publish_copy(src, self.checkpoint_path(k))
        ckpt_dir = self.out / "ckpt"
        if ckpt_dir.is_dir():  # rewind checkpoints of a replaced run that this one does not make
            keep = {f"epoch{k}.pt" for k in self.save_epochs}
            for p in ckpt_dir.glob("epoch*.pt"):
                if p.name not in keep:
                    p.unlink()
        checkpoints.save_checkpoint(self.out / "final.pt", state_dict, model_cfg, data_meta, epochs, self.provenance,
                                    **extra)
        io.write_text(self.out / "metrics.csv", metrics_csv(rows))
        if self.write_predictions:
            io.save_artifact(self.out / "predictions.pt", "predictions", {
                "logits": final_eval["logits"].float().cpu(),
                "labels": final_eval["labels"].long().cpu(),
            }, self.provenance)
        else:
            (self.out / "predictions.pt").unlink(missing_ok=True)
        last = rows[-1]
        sparsity_all = None
        if extra.get("mask_sparsity") is not None and self.mask is not None:
            from ..pruning.report import weights_sparsity

            sparsity_all = weights_sparsity(state_dict, self.mask)
        return {
            "run": self.run_name,
            "tags": self.tags,
            "test_acc": final_eval["acc"],
            "test_top5": final_eval["top5"],
            "test_loss": final_eval["loss"],
            "train_loss": last["train_loss"],
            "train_acc": last["train_acc"],
            "epochs": epochs,
            "density": density,
            "sparsity_realised": None if density is None else 1.0 - density,  # measured on the mask applied
            "sparsity_all_weights": sparsity_all,
            "train_seconds": sum(r["seconds"] for r in rows),
            "fingerprint": self.fingerprint,
            "request": self.request,
            "provenance": self.provenance,
        }

    def finish(self, result: dict) -> None:
        """result.json last (its presence means finished), then the scratch files go."""
        io.write_json(self.out / "result.json", result)
        self.discard_staging()
        for name in SCRATCH_NAMES:
            remove_scratch(self.out / name)


def _publish_copy(src: Path, dst: Path) -> None:
    """Put the staged ``src`` at ``dst`` atomically, keeping ``src`` until the run is finished.

    A kill in the middle of the final writes leaves the staged file, so the
    rerun (which resumes after the last epoch) can publish it again.
    """
    dst.parent.mkdir(parents=True, exist_ok=True)
    with io.atomic_path(dst) as tmp:
        tmp.unlink()
        try:
            os.link(src, tmp)  # same file system: no copy
        except OSError:
            shutil.copyfile(src, tmp)


def remove_scratch(path: str | Path) -> None:
    """Delete a resume file and any temporary a killed write of it left."""
    path = Path(path)
    path.unlink(missing_ok=True)
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        tmp.unlink(missing_ok=True)

