"""Where a config's runs live, from the library's own plan (sparsebasin.plan), for tests.

Run directories are named by what determines them (a key of the settings), so
tests never spell one out: they ask the plan for the job with some tags.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def plan_of(config: Path | dict | None = None, **overrides):
    from sparsebasin.plan.config import check
    from sparsebasin.plan.table import Plan

    if not isinstance(config, dict):
        config = yaml.safe_load(Path(config or REPO / "config.yaml").read_text())
    config = {**config, **overrides}
    return Plan(check(config, REPO / "workflow" / "schemas" / "config.schema.yaml"))


def find(kind: str, config: Path | dict | None = None, **tags) -> str:
    """The directory (below the working directory) of the one job of ``kind`` with these tags."""
    found = [j.path for j in plan_of(config).jobs[kind].values()
             if all(str(j.spec["tags"].get(k)) == str(v) for k, v in tags.items())]
    assert len(found) == 1, (kind, tags, found)
    return found[0]


def family(rule: str) -> str:
    """Generated rules count by family: prune_<i> per target set, one fused rule per group."""
    for prefix in ("dense_fused_", "sparse_fused_"):
        if rule.startswith(prefix):
            return prefix[:-1]
    return "prune" if re.fullmatch(r"prune_\d+", rule) else rule


def families(stats: dict[str, int]) -> dict[str, int]:
    out: dict[str, int] = {}
    for rule, n in stats.items():
        out[family(rule)] = out.get(family(rule), 0) + n
    return out
