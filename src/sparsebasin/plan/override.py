"""A command-line override of cell settings, for a quick trial without editing the config file.

    snakemake --cores all --config 'override={"sparse": {"lr": 0.04}, "sparse.batch_size": 64}'

sets those keys in every cell of every experiment (``cells`` is a list, which
``--config`` cannot reach into). Keys may be nested or dotted. Snakemake reads
``--config`` values as untyped YAML (every scalar a string), so the override's
scalars are read again as YAML (``0.04`` a number, ``true`` a boolean) and the
block is checked against the cell schema before it is applied: a misspelled
key or a bad value is one ``config error`` line naming ``override.<key>``.
The merged cells are then checked like any config, and runs are keyed by
their merged settings: a changed hyper-parameter gets new run directories
(and reruns what depends on it), exactly as the same edit of the file would.
Torch-free.
"""

from __future__ import annotations

import copy
from typing import Any

import yaml

from .config import ConfigError, describe, key_path

KEY = "override"


def _undot(block: dict, where: str = KEY) -> dict:
    """{"sparse.lr": 1} -> {"sparse": {"lr": 1}} (nested mappings are undotted too)."""
    out: dict = {}
    for key, value in block.items():
        if not isinstance(key, str) or not key:
            raise ConfigError(f"{where}: keys must be cell keys such as sparse.lr, got {key!r}")
        parts = key.split(".")
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{where}.{key}: {p} is given both as a value and as a section; give it once")
        _add(node, parts[-1], _undot(value, f"{where}.{key}") if isinstance(value, dict) else value,
             ".".join(parts))
    return out


def _add(node: dict, name: str, value: Any, path: str) -> None:
    """Set ``node[name]``, refusing a key the block already set (nested and dotted spellings of one key would
    otherwise be decided by their order in the block)."""
    if isinstance(value, dict) and isinstance(node.get(name), dict):
        for k, v in value.items():
            _add(node[name], k, v, f"{path}.{k}")
    elif name in node:
        raise ConfigError(f"{KEY}.{path} is given twice (nested and dotted); give it once")
    else:
        node[name] = value


def _typed(value: Any) -> Any:
    """Scalars as YAML reads them (Snakemake's --config parser leaves '0.04' a string)."""
    if isinstance(value, dict):
        return {k: _typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_typed(v) for v in value]
    if isinstance(value, str):
        try:
            return yaml.safe_load(value) if value.strip() else value
        except yaml.YAMLError:
            return value
    return value


def _optional(schema: Any) -> Any:
    """``schema`` with every ``required`` and every default dropped: an override names only what it changes."""
    if isinstance(schema, dict):
        return {k: _optional(v) for k, v in schema.items() if k not in ("required", "default")}
    if isinstance(schema, list):
        return [_optional(v) for v in schema]
    return schema


def _merge(into: dict, block: dict) -> None:
    for key, value in block.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = copy.deepcopy(value)


def apply(config: dict, schema: dict) -> dict:
    """Merge ``config["override"]`` into every cell after checking it against the cell schema; returns config."""
    block = config.get(KEY)
    if block in (None, {}):
        return config
    if not isinstance(block, dict):
        raise ConfigError(f"{KEY} = {block!r}: must be a mapping of cell keys, e.g. "
                          """--config 'override={"sparse": {"lr": 0.04}}'""")
    block = _typed(_undot(block))
    import jsonschema

    from .config import _validator

    partial = {"$defs": _optional(schema.get("$defs", {})), "$ref": "#/$defs/cell"}
    errors = list(_validator(partial).iter_errors(block))
    if errors:
        err = jsonschema.exceptions.best_match(errors)
        line = describe(err)
        where = key_path(err.absolute_path)
        raise ConfigError(line.replace(where, f"{KEY}.{where}" if where else KEY, 1) if where else f"{KEY}: {line}")
    for exp in config.get("experiments", {}).values():
        for cell in exp.get("cells", []):
            _merge(cell, block)
    config[KEY] = block
    return config
