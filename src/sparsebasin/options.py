"""What every step shares: where its data is, how its job runs, and how a step's options are declared.

The library's entry points (``train_run``, ``run_sparse``, ``fused_run``,
``run_imp``, ``match_checkpoints``, ``interpolate_checkpoints``,
``plane_through``) take these two records instead of a dozen loose keywords,
and the step CLIs build them from one argument group each
(``steps.common.data_options`` / ``run_options``).

A step's own options live in one record each (``training.config.TrainConfig``,
``pruning.schedule.IMPOptions``, ``symmetry.align.MatchOptions``,
``symmetry.landscape.EvalOptions``), every field declared by ``option``: the
step's argparse group (``steps.common.add_record_args``), the plan's command
line from a config section (``section_argv``) and the part of a run's key the
section sets (``section_key``) all read the declarations, so a new option is
one field plus its schema entry, with no ``default:`` there (a schema default
counts as set: it would enter every key and command line). Torch-free.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable


@dataclass(frozen=True)
class DataOptions:
    """The dataset, its root directory, the training subset (the first N examples; None = all) and where
    ImageNet's JPEGs are decoded (``pil`` workers, or ``device``: sparsebasin.data.jpeg)."""

    dataset: str
    data_dir: str | Path
    train_subset: int | None = None
    decode: str = "pil"

    def record(self) -> dict:
        """What a result's provenance says about its data."""
        return {"dataset": self.dataset, "data_dir": str(self.data_dir), "train_subset": self.train_subset,
                **({"decode": self.decode} if self.decode != "pil" else {})}

    def load(self, split: str):
        """One split (the training subset applies to ``train`` only)."""
        from .data import load_split

        subset = self.train_subset if split == "train" else None
        ds = load_split(self.dataset, self.data_dir, split, train_subset=subset)
        if self.decode != "pil" and hasattr(ds, "decode"):
            ds = dataclasses.replace(ds, decode=self.decode)
        return ds


@dataclass(frozen=True)
class RunOptions:
    """How a job runs: device ("auto", "cpu", "cuda[:i]"), progress display, result tags, and what a finished
    run made with other arguments gets: refused (False), replaced (True, ``--force``), or replaced only when
    its inputs or rewind checkpoints changed ("stale", ``--rebuild-stale``: the workflow's mode)."""

    device: str = "auto"
    progress: str = "auto"
    tags: dict = field(default_factory=dict)
    force: bool | str = False


def option(help: str | Callable[[], str], type: str | None = None, default=dataclasses.MISSING, *,
           choices: tuple | Callable[[], tuple] | None = None, metavar: str | None = None, shared: bool = False,
           cli: bool = True, key: str = "always", result: bool = True):
    """A record field that is also a step option (``--name-with-dashes``) and a config key (``name``).

    ``type`` names a validated argparse type of ``steps.common.TYPES``, or ``choices`` a fixed set; ``help``
    and ``choices`` may be functions giving them, for a table that imports torch (read only when a step
    builds its parser). ``shared``: IMP's fine-tuning takes it without the ``ft-`` prefix (augment,
    precision). ``cli`` False: a setting of the code and presets only. ``key`` (TrainConfig's ``key_dict``):
    "always" (part of every run's key), or "if_set" (only when it differs from its default: a new option
    keeps every existing run's key, as open_lth omits unset hparams from its hash; the other records hash
    only what a config section sets, ``section_key``). ``result`` False: it changes speed or memory, never a
    number, so no key hashes it (``section_key``, ``plan.keys.train_settings``); none is a config key today
    (one would still be a Snakemake param through ``section_argv``: pass it with the rules' run-only options).
    """
    return dataclasses.field(default=default, metadata={"help": help, "type": type, "choices": choices,
                                                        "metavar": metavar, "shared": shared, "cli": cli,
                                                        "key": key, "result": result})


def declared(record: type) -> list[dataclasses.Field]:
    """The record's fields that are step options, in declaration order (the order of every command line)."""
    return [f for f in dataclasses.fields(record) if f.metadata.get("cli")]


def config_name(f: dataclasses.Field, prefix: str = "") -> str:
    """The config key (and argparse dest) of option ``f`` under ``prefix`` ("ft-": ``ft_lr``)."""
    return ("" if f.metadata.get("shared") else prefix.replace("-", "_")) + f.name


def argv_value(value) -> str:
    """How a config value is spelt on a step's command line: lists comma-separated, the rest as str()."""
    return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def section_argv(record: type, section: dict, *, prefix: str = "", skip: tuple = ()) -> str:
    """``--{prefix}name value`` for every option of ``record`` that the config ``section`` sets (as
    ``{prefix}name``), in declaration order: the step parses exactly these declarations back."""
    a = ""
    for f in declared(record):
        name = config_name(f, prefix)
        if f.name not in skip and name in section:
            a += f" --{name.replace('_', '-')} {argv_value(section[name])}"
    return a


def section_key(record: type, section: dict, *, skip: tuple = ()) -> dict:
    """What a run's key hashes of the options ``section`` sets: only the set ones that change a result, so an
    option added later (and unset) keeps every existing key."""
    return {f.name: section[f.name] for f in declared(record)
            if f.name in section and f.name not in skip and f.metadata.get("result", True)}


__all__ = ["DataOptions", "RunOptions", "option", "declared", "config_name", "section_argv", "section_key"]
