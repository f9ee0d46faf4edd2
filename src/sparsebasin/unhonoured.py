"""Settings a step cannot honour as given: said in one warning line, and the value used recorded.

A step that quietly uses less than it was asked for (1 matching batch when
the config says 2, a 20-image sample when the config says 50,000, a batch
that is the whole 100-image split when the config says 128, a sparsity whose
kept-weight count rounds to another percentage) gives numbers that look
like the setting's and are not. Each such case goes through ``note``: one
``warning:`` line in the step's log (rank 0 alone under torchrun) and a
record ``{"asked", "used", "why"}`` the step writes into its output file
under ``unhonoured`` (perm.json, barriers.json's samples, sparsity.json,
result.json's provenance), so the value actually used travels with the
numbers. Torch-free.
"""

from __future__ import annotations

# A sparsity is shown as a percentage to 0.1 (analysis.names.sparsity: "97.5%"); a realised sparsity more
# than half of that away from its target would be printed as another number than the label it runs under.
SPARSITY_LABEL_TOLERANCE = 0.0005


def note(what: str, asked, used, why: str) -> dict:
    """Warn that ``what`` was ``asked`` but ``used`` is what the step uses (``why``); return the record."""
    from . import distributed
    from .progress import log

    if distributed.writer():
        log(f"warning: {what}: asked {asked}, using {used} ({why})")
    return {"asked": asked, "used": used, "why": why}


def sample(asked: int, total: int, what: str) -> dict | None:
    """A random sample of ``asked`` examples of a split that has ``total``: all of it, said when fewer."""
    if asked is None or int(asked) <= int(total):
        return None
    return note(what, int(asked), int(total), f"examples: the split has only {int(total)}")


def batches(asked_batches: int, batch_size: int, total: int, what: str) -> dict | None:
    """``asked_batches`` batches of ``batch_size`` from a split of ``total`` examples: fewer, said, when short."""
    if int(asked_batches) * int(batch_size) <= int(total):
        return None
    used = -(-int(total) // int(batch_size))
    return note(what, int(asked_batches), used,
                f"{int(asked_batches)} x {int(batch_size)} examples asked of a split of {int(total)}")


def batch_size(asked: int, total: int, what: str) -> dict | None:
    """A training batch larger than the training split: each epoch is one batch of the whole split."""
    if int(asked) <= int(total):
        return None
    return note(what, int(asked), int(total),
                f"the training split has {int(total)} examples: every epoch is one step on all of them")


def epoch_examples(total: int, batch_size: int, drop_last: bool, what: str) -> dict | None:
    """The examples an epoch trains on when its trailing batch is dropped (``session.drop_last_batch``)."""
    if not drop_last or int(total) % int(batch_size) == 0:
        return None
    used = int(total) - int(total) % int(batch_size)
    return note(what, int(total), used, f"the trailing batch of {int(total) - used} is dropped every epoch: "
                                        "BatchNorm cannot train on one example and every process needs one")


def sparsity(target: float, realised: float, kept: int, total: int, what: str) -> dict | None:
    """A target whose kept-weight count rounds so far that its percentage label misstates the mask."""
    if abs(float(realised) - float(target)) <= SPARSITY_LABEL_TOLERANCE:
        return None
    return note(what, float(target), round(float(realised), 6),
                f"{kept} of {total} prunable weights kept: the nearest whole count to the target")


__all__ = ["SPARSITY_LABEL_TOLERANCE", "batch_size", "batches", "epoch_examples", "note", "sample", "sparsity"]
