"""What the workflow says before its first job and after its last (Snakefile onstart/onsuccess), torch-free."""

from __future__ import annotations

import os
from typing import Iterable

from . import reports
from .table import Plan


def fused_extras(plan: Plan, running_rules: Iterable[str], needed: set[str], exists=os.path.exists) -> list[str]:
    """One note per fused job about to run that also trains runs nothing in this invocation needs.

    A fused job trains every unfinished run of its group in one process, so a target that needs only some
    of them (one figure, one sparse run) trains the others too. ``fused`` is no part of any run's key (a run
    is the same run fused or not), so ``--config fused=False`` trains exactly what the target needs.
    """
    running = set(running_rules)
    out = []
    for fj in plan.fused_jobs():
        if fj.name not in running:
            continue
        todo = [r for r in fj.jobs if not all(exists(o) for o in r.outputs)]
        extra = [r for r in todo if not any(o in needed for o in r.outputs)]
        if not extra:
            continue
        shown = ", ".join("seed" + r.path.split("/seed", 1)[-1] for r in extra[:4]) + (", ..." if len(extra) > 4 else "")
        out.append(f"note: {fj.name} trains {len(todo)} runs of its fused group; this invocation needs "
                   f"{len(todo) - len(extra)} of them and also trains {len(extra)} more ({shown}); to train only what "
                   "it needs, add --config fused=False")
    return out


def set_aside_stale(plan: Plan, root: str = ".") -> list[str]:
    """Move what the config no longer asks for out of each experiment's tree (``reports.set_aside``); one line
    per experiment that had any. Run directories under results/runs/ are finished work and stay."""
    out = []
    for exp in plan.experiments():
        moved, where = reports.set_aside(plan, exp, root)
        if moved:
            shown = ", ".join(m.split(f"/{exp}/", 1)[-1] for m in moved[:4]) + (", ..." if len(moved) > 4 else "")
            out.append(f"moved {len(moved)} file(s) of results/{exp}/ that this config no longer asks for to "
                       f"{where}/: {shown}")
    return out
