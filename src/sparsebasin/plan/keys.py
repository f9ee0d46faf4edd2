"""Content keys: a run is named by what determines its result, so equal runs get one directory.

A key is 8 hex digits of the sha256 of the canonical JSON of the resolved
settings (presets expanded: two configs that spell the same hyper-parameters
differently get the same key). Chance collisions among the few hundred
settings of a config are negligible (about 1e-5 for 300 keys).
"""

from __future__ import annotations

import hashlib
import json


def key(material, n: int = 8) -> str:
    text = json.dumps(material, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def ft_section(prune: dict) -> dict:
    """IMP's fine-tuning as a training section: the ``prune`` section's ``ft_*`` keys without the prefix."""
    return {"preset": prune.get("ft_preset", "imp_ft"),
            **{k[3:]: v for k, v in prune.items() if k.startswith("ft_") and k != "ft_preset"}}


def train_settings(section: dict, precision: str, drop: tuple = ()) -> dict:
    """A config section (preset + overrides) resolved to every TrainConfig value that determines a result: not
    the preset's name (its values are here) nor an option declared ``result=False`` (eval_batch_size)."""
    import dataclasses

    from ..training.config import TrainConfig, resolve_config

    overrides = {k: v for k, v in section.items() if k != "preset"}
    cfg = resolve_config(section.get("preset", "dense"), **overrides).key_dict()
    cfg["precision"] = precision
    speed_only = [f.name for f in dataclasses.fields(TrainConfig) if not f.metadata.get("result", True)]
    for k in ("preset", *speed_only, *drop):
        cfg.pop(k, None)
    return cfg
