"""The workflow config, checked before anything is planned: one line naming the key, or a valid config.

Checks, in order (each refuses with ``ConfigError``, which the workflow prints
as ``config error: ...`` and exits 1):

1. the YAML files themselves: a key given twice in one mapping (YAML keeps the
   last silently; a second ``device: cuda`` at the end would turn every job into
   a GPU job), with the file and both lines;
2. numbers: NaN and infinities anywhere (``lr: .inf`` would pass the schema and
   fail only inside a job);
3. the JSON schema (``workflow/schemas/config.schema.yaml``) with two
   tightenings: an integer is an ``int`` (JSON Schema counts ``2.0`` as one,
   and the step CLIs would reject it in every job's log, naming a flag, not the
   key), and defaults are filled in;
4. what a schema cannot say: the dataset and model must be ones the registry
   knows (each module describes itself: ``sparsebasin.registry``), with the
   widths and model arguments their cards allow; sparsity labels (the
   ``S{s}`` directory names) must name their sparsity exactly and not collide,
   and the IMP schedule a cell asks for must stay within
   ``pruning.schedule.MAX_ROUNDS`` rounds.

Torch-free: the workflow imports it at parse time.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Iterable

import yaml


class ConfigError(Exception):
    """A config mistake, as the one line the user sees."""


# ------------------------------------------------------------ YAML files --

class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping."""

    source = "config"

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:  # unhashable key: the schema will refuse it
                continue
            if first is not None:
                raise ConfigError(f"{self.source} line {key_node.start_mark.line + 1}: duplicate key {key!r} (first "
                                  f"at line {first.line + 1}); YAML would keep only the last one: remove the other")
            seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


def check_yaml_files(paths: Iterable[str | os.PathLike]) -> None:
    """Parse each config file again, refusing duplicate keys (Snakemake's loader keeps the last)."""
    for path in paths:
        path = Path(path)
        if not path.is_file():
            continue  # Snakemake reports a missing config file itself
        loader_cls = type("Loader", (_UniqueKeyLoader,), {"source": str(path)})
        loader = loader_cls(read_config_text(path))
        try:
            loader.get_single_data()
        except yaml.YAMLError:
            return  # a syntax error: Snakemake has already said so
        finally:
            loader.dispose()


def read_config_text(path: str | os.PathLike) -> str:
    """A config file's text as UTF-8 whatever the locale; one line naming the file when it is not UTF-8
    (an editor's UTF-16 or Latin-1 save), where YAML would end in a traceback."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        from ..io import not_utf8

        raise ConfigError(f"{path} is not UTF-8 text ({not_utf8(data, exc)}); save it as UTF-8 "
                          "(your editor's encoding setting) and rerun") from None


# ------------------------------------------------------------ walking --

def key_path(path: Iterable) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _walk(obj: Any, path: tuple = ()):
    yield path, obj
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _walk(v, path + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _walk(v, path + (i,))


def check_finite(config: dict) -> None:
    for path, value in _walk(config):
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{key_path(path)} = {value!r}: not a finite number; fix this value in the config file")


# ------------------------------------------------------------- schema --

def _validator(schema: dict):
    import jsonschema

    base = jsonschema.validators.validator_for(schema)

    def is_integer(_checker, instance) -> bool:  # an int, not 2.0 and not True
        return isinstance(instance, int) and not isinstance(instance, bool)

    def fill_defaults(validator, properties, instance, schema_):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub and name not in instance:
                    instance[name] = sub["default"]
        yield from base.VALIDATORS["properties"](validator, properties, instance, schema_)

    checker = base.TYPE_CHECKER.redefine("integer", is_integer)
    return jsonschema.validators.extend(base, {"properties": fill_defaults}, type_checker=checker)(schema)


def describe(err) -> str:
    """One line for a jsonschema ValidationError: where, what, what to do."""
    where = key_path(err.absolute_path)
    if err.validator == "additionalProperties":
        allowed = sorted(err.schema.get("properties", {}))
        extra = sorted(k for k in err.instance if k not in allowed)
        key = f"{where}.{extra[0]}" if where else extra[0]
        return (f"unknown key {key!r}" + (f" (allowed in {where}: " if where else " (allowed at the top level: ")
                + f"{', '.join(allowed)}); remove it or fix its spelling")
    if err.validator == "required":
        missing = err.message.split("'")[1] if "'" in err.message else err.message
        return f"{where or 'the config'} is missing the required key {missing!r}; add it"
    if err.validator == "propertyNames" or "propertyNames" in err.schema_path:
        hint = err.schema.get("description") or (err.parent.schema.get("description") if err.parent else None)
        return f"{where}: name {err.instance!r} is not allowed ({hint or err.message}); rename it"
    if err.validator == "type" and err.validator_value == "integer" and isinstance(err.instance, float):
        return (f"{where} = {err.instance!r}: must be an integer; write {int(err.instance)}"
                if err.instance.is_integer() else f"{where} = {err.instance!r}: must be an integer; fix this value")
    hint = err.schema.get("description") if err.validator != "enum" else None
    return (f"{where or 'the config'} = {err.instance!r}: {err.message}"
            + (f" (expected {hint})" if hint else "") + "; fix this value in the config file")


def validate_schema(config: dict, schema_path: str | os.PathLike) -> None:
    """Validate ``config`` in place (defaults filled), or raise ConfigError with the best-matching error."""
    import jsonschema

    schema = yaml.safe_load(Path(schema_path).read_text(encoding="utf-8"))
    errors = list(_validator(schema).iter_errors(config))
    if errors:
        raise ConfigError(describe(jsonschema.exceptions.best_match(errors)))


# ------------------------------------------------------ beyond a schema --

SPARSITY_KEYS = {("sweep", "sparsities"), ("early_matching", "sparsities"), ("imp_barrier", "sparsity"),
                 ("plane", "sparsity"), ("diversity", "sparsity")}


def cell_sparsities(cell: dict, where: str) -> list[tuple[str, float]]:
    """(key path, value) of every sparsity a cell names."""
    out = []
    for section, key in sorted(SPARSITY_KEYS):
        value = (cell.get(section) or {}).get(key)
        if value is None:
            continue
        values = value if isinstance(value, list) else [value]
        for i, v in enumerate(values):
            out.append((f"{where}.{section}.{key}" + (f"[{i}]" if isinstance(value, list) else ""), float(v)))
    return out


def check_sparsity_labels(config: dict) -> None:
    """Every sparsity must be exactly what its S{label} directory says, and labels may not collide."""
    from ..pruning.schedule import fmt_sparsity, label_error

    for exp, e in config["experiments"].items():
        for i, cell in enumerate(e["cells"]):
            seen: dict[str, tuple[str, float]] = {}
            for where, s in cell_sparsities(cell, f"experiments.{exp}.cells[{i}]"):
                why = label_error(s)
                if why:
                    raise ConfigError(f"{where} = {s!r}: {why}; fix this value in the config file")
                label = fmt_sparsity(s)
                if label in seen and seen[label][1] != s:
                    raise ConfigError(f"{where} = {s!r} and {seen[label][0]} = {seen[label][1]!r} share the directory "
                                      f"S{label}; give distinct sparsities")
                seen[label] = (where, s)


def check_names(config: dict) -> None:
    """Datasets and models the registry knows, with the widths and model arguments their cards allow."""
    from .. import registry

    datasets, archs = registry.datasets(), registry.architectures()
    for exp, e in config["experiments"].items():
        for i, cell in enumerate(e["cells"]):
            where = f"experiments.{exp}.cells[{i}]"
            if cell["dataset"] not in datasets:
                raise ConfigError(f"{where}.dataset = {cell['dataset']!r}: not a known dataset; choose one of "
                                  f"{', '.join(datasets)}")
            if cell["model"] not in archs:
                raise ConfigError(f"{where}.model = {cell['model']!r}: not a known model; choose one of "
                                  f"{', '.join(archs)}")
            card = archs[cell["model"]]
            if card["widths"] is not None and any(w not in card["widths"] for w in cell["widths"]):
                raise ConfigError(f"{where}.widths = {cell['widths']}: {card['name']} supports width "
                                  f"{', '.join(map(str, card['widths']))} only; set widths: {list(card['widths'])}")
            stray = [w for w in cell.get("fused_widths", []) if w not in cell["widths"]]
            if stray:
                raise ConfigError(f"{where}.fused_widths = {cell['fused_widths']}: width {stray[0]} is not one of "
                                  f"the cell's widths {cell['widths']}; list fused widths among them")
            points = cell.get("match", {}).get("stream_points", "stage_output")
            if points not in card["stream_points"]:
                raise ConfigError(f"{where}.match.stream_points = {points!r}: {card['name']} defines "
                                  f"{', '.join(card['stream_points'])} only")
            extra = sorted(set(cell.get("model_args", {})) - set(card["model_args"]))
            if extra:
                allowed = ", ".join(card["model_args"])
                raise ConfigError(f"{where}.model_args.{extra[0]}: {card['name']} takes no such argument"
                                  + (f" (it takes {allowed})" if allowed else "; remove model_args"))


def check_imp_rounds(config: dict) -> None:
    """The chained IMP schedule of each cell stays within MAX_ROUNDS rounds."""
    from ..errors import UserError
    from ..pruning.schedule import imp_schedule

    for exp, e in config["experiments"].items():
        for i, cell in enumerate(e["cells"]):
            targets = [s for _, s in cell_sparsities(cell, "")]
            if not targets:
                continue
            try:
                imp_schedule(targets, cell["prune"]["rate"], chain=True)
            except UserError as exc:
                raise ConfigError(f"experiments.{exp}.cells[{i}].prune.rate = {cell['prune']['rate']!r}: {exc}") from None


def check_seeds(config: dict) -> None:
    """Every seed a job gets stays within what torch and int64 tables hold (``limits.MAX_SEED``): the
    seeds derived from a seed index (dense A 2s, B 2s+1, sparse 1000+s) and the matching sample seeds."""
    from ..limits import MAX_SEED
    from .table import dense_seed, sparse_seed

    for path, value in _walk(config):
        if not path or isinstance(value, bool) or not isinstance(value, int):
            continue
        key = path[-2] if isinstance(path[-1], int) else path[-1]
        if key in ("seeds", "seed"):  # seed indices
            derived = max(dense_seed(value, "B"), sparse_seed(value))
            if derived > MAX_SEED:
                lo, hi = 0, value  # the largest index whose seeds fit (the derivations grow with s)
                while lo < hi:
                    mid = (lo + hi + 1) // 2
                    lo, hi = (mid, hi) if max(dense_seed(mid, "B"), sparse_seed(mid)) <= MAX_SEED else (lo, mid - 1)
                largest = lo
                raise ConfigError(f"{key_path(path)} = {value}: seed index s trains with seeds up to "
                                  f"{derived} (2s+1 and 1000+s), past 2**63-1, the largest seed torch and int64 "
                                  f"tables hold; use seed indices up to {largest}")
        elif key == "sample_seed" and value > MAX_SEED:
            raise ConfigError(f"{key_path(path)} = {value}: past 2**63-1, the largest seed torch and int64 tables "
                              "hold; use a smaller seed")


def check_device(config: dict) -> None:
    """``device: auto`` cannot work for a workflow: whether a job asks for a GPU is fixed when the plan is made
    (on a login node without one), and every job would otherwise land on cuda:0 or on a CPU partition."""
    if config.get("device") == "auto":
        raise ConfigError("device = 'auto': the workflow must know which jobs need a GPU; write device: cuda "
                          "(training and evaluation jobs ask for one GPU each) or device: cpu")


def check_training(config: dict) -> None:
    """Each cell's dense, sparse and IMP fine-tuning settings resolve to a valid TrainConfig: a preset that
    exists, and the rules between fields (warm-up within the epochs, Nesterov with momentum) at the shortest
    run each section makes (sparse: T - the largest rewind point), named by config key before any job."""
    from ..errors import UserError
    from ..training.config import PRESETS, resolve_config
    from .cells import STUDIES, Cell
    from .keys import ft_section

    for exp, e in config["experiments"].items():
        for i, raw in enumerate(e["cells"]):
            # the sections as written: which seeds and widths they take is checked when the plan is built
            cell = Cell(exp, i, raw, {name: raw[name] for name in STUDIES if name in raw})
            p = cell.raw.get("prune") or {}
            k = max((k for k in cell.rewind_points() if k < cell.T), default=0)  # k >= T: the cell checks say
            runs = [("dense", "preset", cell.dense, ""),
                    ("sparse", "preset", {**cell.sparse, "epochs": cell.T - k},
                     f" (its shortest runs: {cell.T - k} epochs = dense.epochs {cell.T} - rewind point {k})"),
                    ("prune", "ft_preset", ft_section(p), " (the ft_ keys: IMP's fine-tuning)")]
            for section, preset_key, settings, what in runs:
                if section == "prune" and "prune" not in cell.raw:
                    continue
                preset = settings.get("preset", "dense")
                if preset not in PRESETS:
                    raise ConfigError(f"{cell.where}.{section}.{preset_key} = {preset!r} is not a preset; choose one "
                                      f"of {', '.join(PRESETS)}")
                try:
                    resolve_config(preset, **{n: v for n, v in settings.items() if n != "preset"})
                except UserError as exc:
                    raise ConfigError(f"{cell.where}.{section}{what}: {str(exc).removeprefix('training config: ')}"
                                      ) from None


def check_gpus_per_run(config: dict) -> None:
    """A data-parallel run (train, the IMP fine-tuning, sparse) splits its global batches evenly over its
    processes; a batch size the config leaves unset is its preset's."""
    from ..training.config import resolve_config

    for exp, e in config["experiments"].items():
        for i, cell in enumerate(e["cells"]):
            n = cell.get("gpus_per_run", 1)
            if n == 1:
                if cell.get("sync_bn"):
                    raise ConfigError(f"experiments.{exp}.cells[{i}].sync_bn = true needs gpus_per_run > 1 (one "
                                      "process already normalises over its whole batch); drop it or set gpus_per_run")
                continue
            dense, sparse, prune = cell["dense"], cell.get("sparse") or {}, cell.get("prune") or {}
            batches = {  # dense.batch_size is required; sparse runs inherit it
                "dense.batch_size": dense["batch_size"],
                "sparse.batch_size": sparse.get("batch_size", dense["batch_size"]),
                "prune.ft_batch_size": prune.get("ft_batch_size"),
            }
            for name, b in batches.items():
                preset = "" if b is not None else f", from the preset {prune.get('ft_preset', 'imp_ft')}"
                b = b if b is not None else resolve_config(prune.get("ft_preset", "imp_ft")).batch_size
                if b % n:
                    raise ConfigError(f"experiments.{exp}.cells[{i}].gpus_per_run = {n}: {name} {b} (the global "
                                      f"batch{preset}) is not divisible by it; use a multiple of {n}")


def check_tracking(config: dict) -> None:
    """A tracker whose package is missing would warn in every job's log; say it once, before any job."""
    backend = (config.get("tracking") or {}).get("backend", "none")
    if backend != "none":
        from ..tracking import missing_package

        missing = missing_package(backend)
        if missing:
            raise ConfigError(f"tracking.backend = {backend!r}: {missing.replace('--tracker ' + backend, 'it')}")


def check_compile(config: dict) -> None:
    """A fused job runs its members in one set of launches already; the fused step refuses --compile."""
    if config.get("compile", "none") != "none" and config.get("fused"):
        raise ConfigError(f"compile = {config['compile']!r} with fused: true: compilation is for unfused runs (the "
                          "fused step refuses it); set fused: false to compile every run, or compile: none")


def check_throughput(config: dict) -> None:
    """The measured images/s the GPU runtimes come from must be readable now, not when a rule asks."""
    if config.get("throughput"):
        from .resources import load_throughput

        try:
            load_throughput(config["throughput"])
        except ValueError as exc:
            raise ConfigError(f"throughput = {config['throughput']!r}: {exc}; run benchmarks/gpu_check.py on a GPU "
                              "node to write it, or remove the key (runtimes then come from FLOP counts)") from None


def check(config: dict, schema_path: str | os.PathLike, files: Iterable[str | os.PathLike] = ()) -> dict:
    """Every check of this module, in order; returns ``config`` with defaults filled."""
    from .override import apply as apply_override

    check_yaml_files(files)
    apply_override(config, yaml.safe_load(Path(schema_path).read_text(encoding="utf-8")))
    check_finite(config)
    check_device(config)
    validate_schema(config, schema_path)
    check_seeds(config)
    check_names(config)
    check_sparsity_labels(config)
    check_imp_rounds(config)
    check_training(config)
    check_gpus_per_run(config)
    check_compile(config)
    check_throughput(config)
    check_tracking(config)
    return config
