"""Argument groups and validated argument types shared by the step CLIs.

Every option is declared once here (or by the one step that owns it), and
every number goes through a type that checks it at parse time: a size of 0
or -4, a NaN or an infinite learning rate is one line before any work, never
a traceback in the middle of a job. Nothing here imports torch.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import re

from .. import registry
from ..limits import MAX_SEED
from ..options import argv_value, config_name, declared

DATASETS = registry.dataset_names()  # the dataset modules' cards (torch-free)


# ----------------------------------------------------------------- types --

class Number:
    """An argparse type: an int or finite float within bounds, else a one-line reason."""

    def __init__(self, kind: type, label: str, minimum: float | None = None, *, above: bool = False,
                 maximum: float | None = None, below: bool = False):
        self.kind, self.label = kind, label
        self.minimum, self.above, self.maximum, self.below = minimum, above, maximum, below
        self.__name__ = label  # argparse names the type in some messages

    def __call__(self, text: str):
        try:
            value = self.kind(text)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"must be {self.label}, got {text!r}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be {self.label}, got {text!r}")
        if self.minimum is not None and (value <= self.minimum if self.above else value < self.minimum):
            raise argparse.ArgumentTypeError(f"must be {self.label}, got {text!r}")
        if self.maximum is not None and (value >= self.maximum if self.below else value > self.maximum):
            raise argparse.ArgumentTypeError(f"must be {self.label}, got {text!r}")
        return value

    @property
    def allows_zero(self) -> bool:
        return self.minimum is None or (self.minimum <= 0 and not (self.minimum == 0 and self.above))


POSITIVE_INT = Number(int, "a positive integer", 1)
NONNEG_INT = Number(int, "an integer >= 0", 0)
POSITIVE_FLOAT = Number(float, "a positive finite number", 0, above=True)
NONNEG_FLOAT = Number(float, "a finite number >= 0", 0)
FRACTION = Number(float, "a number strictly between 0 and 1", 0, above=True, maximum=1, below=True)
MOMENTUM = Number(float, "a number in [0, 1)", 0, maximum=1, below=True)
STEP_GAMMA = Number(float, "a number in (0, 1]", 0, above=True, maximum=1)
SEED = Number(int, "an integer in [0, 2**63)", 0, maximum=MAX_SEED)  # what torch and int64 tables hold (limits)


class NumberList:
    """A comma-separated list whose every entry is of type ``item`` (empty text: the empty list)."""

    def __init__(self, item: Number, what: str, unique_sorted: bool = False):
        self.item, self.what, self.unique_sorted = item, what, unique_sorted
        self.__name__ = f"list of {item.label}s"

    def __call__(self, text: str) -> list:
        out = []
        for part in (p.strip() for p in text.split(",")):
            if not part:
                continue
            try:
                out.append(self.item(part))
            except argparse.ArgumentTypeError:
                raise argparse.ArgumentTypeError(
                    f"each {self.what} must be {self.item.label}, got {part!r} in {text!r}") from None
        return sorted(set(out)) if self.unique_sorted else out


EPOCH_LIST = NumberList(NONNEG_INT, "epoch", unique_sorted=True)
SPARSITY_LIST = NumberList(FRACTION, "target sparsity")

_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def device_arg(text: str) -> str:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (the devices a step can use; availability is checked at run time)."""
    if not _DEVICE.match(text):
        raise argparse.ArgumentTypeError(f"must be auto, cpu, cuda or cuda:N, got {text!r}")
    return text


# ---------------------------------------------------------------- groups --

def add_data_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--dataset", required=True, choices=DATASETS)
    g.add_argument("--data-dir", default="data", help="dataset root (default: data)")
    g.add_argument("--train-subset", type=POSITIVE_INT, default=None,
                   help="use only the first N training examples (tests)")
    g.add_argument("--imagenet-decode", choices=("pil", "device"), default="pil",
                   help="ImageNet JPEGs: decoded by PIL in the DataLoader workers, or on the training device "
                        "(nvjpeg on CUDA; sparsebasin.data.jpeg); the same crops either way (default pil)")


def model_arg_names() -> dict[str, list[str]]:
    """Every model argument any architecture's card declares (``model_args``) -> the models that take it."""
    out: dict[str, list[str]] = {}
    for name, card in registry.architectures().items():
        for arg in card["model_args"]:
            out.setdefault(arg, []).append(name)
    return out


def add_model_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    """--model, --width and one option per argument a card declares (``--depth``/``--hidden`` for the MLP, a
    plug-in model's own): a plug-in model's arguments reach its builder with no edit here."""
    g = p.add_argument_group("model" if required else
                             "model (for runs without --init; runs with an init take it from the checkpoint)")
    g.add_argument("--model", required=required, default=None, choices=registry.model_names())
    g.add_argument("--width", type=POSITIVE_INT, default=1, help="width multiplier")
    cards = registry.architectures()
    for arg, models in model_arg_names().items():
        defaults = ", ".join(f"{m} {cards[m]['model_args'][arg]}" for m in models)
        flags = dict.fromkeys([f"--{arg.replace('_', '-')}", f"--{arg}"])  # the card's spelling works too
        g.add_argument(*flags, dest=f"model_arg_{arg}", type=POSITIVE_INT, default=None, metavar="N",
                       help=f"model argument {arg} of {', '.join(models)} (default: {defaults})")


def model_cfg_from_args(args: argparse.Namespace) -> dict:
    """The model config the run builds: name, width and the model arguments given (the card's defaults else)."""
    from ..errors import UserError

    cfg = {"name": args.model, "width": args.width}
    takes = registry.architectures()[args.model]["model_args"] if args.model else {}
    for arg in model_arg_names():
        value = getattr(args, f"model_arg_{arg}", None)
        if value is None:
            continue
        if arg not in takes:
            allowed = ", ".join(f"--{a.replace('_', '-')}" for a in takes) or "no model arguments"
            raise UserError(f"--{arg.replace('_', '-')} is not an argument of --model {args.model} (it takes "
                            f"{allowed})")
        cfg[arg] = value
    return cfg


def _boolean(text: str) -> bool:
    word = str(text).strip().lower()
    if word in ("true", "yes", "on", "1"):
        return True
    if word in ("false", "no", "off", "0"):
        return False
    raise ValueError(text)


BOOLEAN = Number(_boolean, "true or false")

def split_list(text: str) -> tuple[str, ...]:
    """A comma-separated subset of train,test (evaluation splits), in order, each once."""
    splits = [s.strip() for s in str(text).split(",") if s.strip()]
    if not splits or any(s not in ("train", "test") for s in splits):
        raise argparse.ArgumentTypeError(f"must be a comma-separated subset of train,test, got {text!r}")
    return tuple(dict.fromkeys(splits))


# The validated types an option record names (``options.option``'s ``type``).
TYPES = {"positive_int": POSITIVE_INT, "nonneg_int": NONNEG_INT, "positive_float": POSITIVE_FLOAT,
         "nonneg_float": NONNEG_FLOAT, "fraction": FRACTION, "momentum": MOMENTUM, "step_gamma": STEP_GAMMA,
         "boolean": BOOLEAN, "seed": SEED, "splits": split_list}


def add_record_args(g, record: type, *, prefix: str = "", skip: tuple = (), defaults: bool = True,
                    default_note: str = "", step_defaults: dict | None = None) -> None:
    """``--{prefix}name`` for every option ``record`` declares (``options.option``), generated from the
    declaration: its validated type or choices, its help, and its default (``step_defaults`` a step's own;
    ``defaults`` False: None, for a record whose unset values come from elsewhere, such as TrainConfig's
    preset)."""
    for f in declared(record):
        if f.name in skip:
            continue
        meta = f.metadata
        if (meta["type"] is None) == (meta["choices"] is None):
            raise TypeError(f"{record.__name__}.{f.name}: declare exactly one of type and choices")
        choices = meta["choices"]() if callable(meta["choices"]) else meta["choices"]
        kind = {"type": TYPES[meta["type"]]} if meta["type"] else {"choices": choices}
        if meta.get("metavar"):
            kind["metavar"] = meta["metavar"]
        default = (step_defaults or {}).get(f.name, f.default)
        default = default if defaults and default is not dataclasses.MISSING else None
        note = default_note or ("" if default is None else f" (default {argv_value(default)})")
        text = meta["help"]() if callable(meta["help"]) else meta["help"]
        g.add_argument(f"--{config_name(f, prefix).replace('_', '-')}", default=default, help=text + note, **kind)


def record_values(record: type, args: argparse.Namespace, *, prefix: str = "") -> dict:
    """The parsed value of every option ``record`` declares that the parser has (what ``add_record_args``
    added), by field name; a skipped one keeps the record's default."""
    dests = {f.name: config_name(f, prefix) for f in declared(record)}
    return {name: getattr(args, dest) for name, dest in dests.items() if hasattr(args, dest)}


def add_optim_args(p: argparse.ArgumentParser, preset_default: str | None = "dense", prefix: str = "",
                   title: str = "optimisation (unset values come from --preset)") -> None:
    """``--preset`` and every TrainConfig option (``--{prefix}lr`` ...), generated from its declaration
    (``options.option``); ``prefix`` "ft-" for IMP fine-tuning (shared options take none)."""
    from ..training.config import PRESETS, TrainConfig

    g = p.add_argument_group(title)
    default = f" (default {preset_default})" if preset_default else ""
    g.add_argument(f"--{prefix}preset", default=preset_default,
                   help=f"named hyper-parameter preset, one of {', '.join(PRESETS)}{default}; it gives the options "
                        "below that are not set")
    add_record_args(g, TrainConfig, prefix=prefix, defaults=False, default_note=" (default: the preset's)")


def optim_overrides(args: argparse.Namespace, prefix: str = "") -> dict:
    """The options the user set, by TrainConfig field (None = take the preset's value)."""
    from ..training.config import TrainConfig

    out = record_values(TrainConfig, args, prefix=prefix)
    if out.get("augment") == "auto":  # "auto" is the dataset's default, which the preset's "auto" already is
        out["augment"] = None
    return out


def add_run_args(p: argparse.ArgumentParser, *, seed: bool = True, progress: bool = True,
                 seed_help: str = "weight-init seed") -> None:
    """Device, threads and tags (every compute step); seeds and progress for the training steps."""
    g = p.add_argument_group("run")
    if seed:
        g.add_argument("--seed", type=SEED, default=0, help=seed_help)
        g.add_argument("--data-seed", type=SEED, default=None, help="data-order seed (default: --seed)")
    g.add_argument("--device", type=device_arg, default="auto", help="auto, cpu, cuda or cuda:N")
    g.add_argument("--threads", type=POSITIVE_INT, default=None, help="CPU threads for torch (default: torch's choice)")
    g.add_argument("--deterministic", action="store_true",
                   help="bit-identical reruns on CUDA too: cudnn.benchmark off, deterministic algorithms (slower)")
    g.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE",
                   help="label recorded with the result (repeatable), e.g. --tag branch=permuted")
    if progress:  # the training steps
        g.add_argument("--progress", choices=("auto", "bar", "log"), default="auto")
        g.add_argument("--sync-bn", action="store_true",
                       help="under torchrun: BatchNorm statistics over the global batch (sparsebasin.syncbn) "
                            "instead of each process's shard (the paper's default); recorded in the run")
        g.add_argument("--compile", choices=("none", "graphs", "inductor"), default="none",
                       help="compile the training step for launch-bound runs: inductor kernels, or those kernels as "
                            "CUDA graphs (graphs); recorded in the run (see sparsebasin.compiling). Default none")
        g.add_argument("--compile-cache", default=None, metavar="DIR",
                       help="persistent compiled-kernel cache (default $SPARSEBASIN_COMPILE_CACHE or "
                            "~/.cache/sparsebasin/torch_compile)")
        add_tracker_args(p)


def add_tracker_args(p: argparse.ArgumentParser) -> None:
    """Experiment tracking (sparsebasin.tracking): optional, offline-safe, never in a declared output."""
    g = p.add_argument_group("tracking")
    g.add_argument("--tracker", choices=("none", "wandb", "tensorboard", "mlflow"), default="none",
                   help="log per-epoch metrics, tags, configuration and result (default none; each backend is an "
                        "extra: pip install -e '.[wandb]' ...)")
    g.add_argument("--tracker-dir", default=None, metavar="DIR", help="where the tracker writes (default <out-dir>/tracking)")
    g.add_argument("--tracker-project", default=None, metavar="NAME", help="W&B project / MLflow experiment / "
                   "TensorBoard subdirectory (default sparsebasin)")
    g.add_argument("--tracker-mode", choices=("online", "offline"), default="offline",
                   help="W&B: online, or offline to sync later (default offline)")
    g.add_argument("--tracker-timeout", type=POSITIVE_FLOAT, default=None, metavar="SECONDS",
                   help="longest wait for one tracker call (import, init, log, finish) before the run goes on "
                        "untracked (default 120)")


def configure_tracking(args: argparse.Namespace) -> None:
    if getattr(args, "tracker", "none") != "none":
        from .. import tracking

        tracking.configure(args.tracker, args.tracker_dir, args.tracker_project, args.tracker_mode, args.tracker_timeout)


def data_options(args: argparse.Namespace):
    """The data group as the library's record (sparsebasin.options.DataOptions)."""
    from ..options import DataOptions

    return DataOptions(args.dataset, args.data_dir, args.train_subset, getattr(args, "imagenet_decode", "pil"))


def run_options(args: argparse.Namespace):
    """The run group (device, progress, tags, --force) as the library's record; threads are set here."""
    from ..options import RunOptions

    set_threads(args.threads)
    device = args.device
    from .. import distributed

    if distributed.launched():  # torchrun (or srun with env://); cli refused the steps that are not data-parallel
        device = distributed.setup(device, sync_bn=bool(getattr(args, "sync_bn", False)))
    if getattr(args, "deterministic", False):
        from ..device import set_deterministic

        set_deterministic()
    configure_tracking(args)
    if getattr(args, "compile", "none") != "none":
        from .. import compiling

        compiling.configure(args.compile, args.compile_cache)
    force = True if getattr(args, "force", False) else ("stale" if getattr(args, "rebuild_stale", False) else False)
    return RunOptions(device=device, progress=getattr(args, "progress", "auto"), tags=parse_tags(args.tag),
                      force=force)


def add_force_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--force", action="store_true",
                   help="replace a finished run made with other arguments (its files go only once the new run has finished)")
    p.add_argument("--rebuild-stale", action="store_true",
                   help="replace a finished run only when its inputs (init, mask, data) or its rewind checkpoints "
                        "changed since it was made; refuse any other difference (what the workflow passes)")


def set_threads(threads: int | None) -> None:
    if threads is not None:
        import torch

        torch.set_num_threads(int(threads))


def parse_tags(tags: list[str]) -> dict:
    from ..errors import UserError

    out = {}
    for t in tags:
        if "=" not in t:
            raise UserError(f"--tag {t!r} must look like KEY=VALUE")
        k, v = t.split("=", 1)
        if not k:
            raise UserError(f"--tag {t!r} has an empty KEY; write KEY=VALUE")
        out[k] = v
    return out


# ----------------------------------------------------------------- paths --

class StepPaths:
    """What a step reads and writes, declared by its ``paths(args)`` so the CLI can refuse, before any
    work, an output that would destroy an input (see ``check_paths``).

    ``inputs``/``outputs``: (option, path) pairs of files; ``out_dirs``: run directories the step
    writes and cleans; ``distinct``: (option, paths) whose entries must be different files
    (a duplicate would distort the result, e.g. a model ensembled with itself).
    """

    def __init__(self, inputs=(), outputs=(), out_dirs=(), distinct=()):
        self.inputs = [(o, p) for o, p in inputs if p is not None]
        self.outputs = [(o, p) for o, p in outputs if p is not None]
        self.out_dirs = [(o, p) for o, p in out_dirs if p is not None]
        self.distinct = list(distinct)


def csv_outputs(option: str, path) -> list[tuple[str, str]]:
    """A CSV output and the provenance sidecar written beside it."""
    if path is None:
        return []
    return [(option, str(path)), (f"{option} (its provenance sidecar)", f"{path}.provenance.json")]


def check_paths(paths: StepPaths) -> None:
    """Refuse outputs that are inputs, outputs written twice, inputs inside a run directory the step
    cleans, and duplicated inputs (symlinks, ``./`` and relative vs absolute paths resolved)."""
    from ..errors import UserError
    from ..io import same_path

    for option, entries in paths.distinct:
        for i, a in enumerate(entries):
            for b in entries[:i]:
                if same_path(a, b):
                    raise UserError(f"{option} lists {b} and {a}, which are the same file; give each input once")
    outputs = paths.outputs
    for i, (oa, a) in enumerate(outputs):
        for ob, b in outputs[:i]:
            if same_path(a, b):
                raise UserError(f"{ob} and {oa} are the same file ({a}); give each output its own path")
        for oi, inp in paths.inputs:
            if same_path(a, inp):
                raise UserError(f"{oa} {a} is also the input {oi}; writing it would destroy the input: "
                                "choose another output path")
    from pathlib import Path

    for od, d in paths.out_dirs:
        root = Path(d).resolve()
        for oi, inp in paths.inputs:
            where = Path(inp).resolve()
            if where == root or root in where.parents:
                raise UserError(f"{od} {d} contains the input {oi} {inp}, which this step would delete or "
                                "overwrite; write the run to another directory")
        for oa, a in outputs:
            if same_path(a, d):
                raise UserError(f"{oa} {a} is the run directory {od}; choose another output path")
