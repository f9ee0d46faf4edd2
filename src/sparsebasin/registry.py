"""Architectures and datasets describe themselves; everyone else reads their cards from here.

Each model module (``sparsebasin/models/<name>.py``) holds one card,
``ARCH = {...}``, and the functions the card promises (``build``,
``permutation_spec``, optionally ``prunable_keys``); each dataset module
(``sparsebasin/data/<name>.py``) holds ``DATASETS = [{...}, ...]`` and a
``load(name, root, split)``. A card is a plain literal, read here with
``ast.literal_eval`` *without importing the module*, so the workflow, the
config checks, the tables and the figures learn every name, label, allowed
width and cost hint without importing torch; ``module(...)`` imports the
module when the torch side needs its functions.

Adding an architecture is one new file in ``sparsebasin/models/`` (or any
importable module listed in the ``SPARSEBASIN_PLUGINS`` environment variable,
comma-separated, which jobs inherit) plus a config that uses it.

Architecture card keys: ``name``, ``label`` (display), ``input`` ("flat":
the dataset's flattened input, or "image"), ``widths`` (allowed widths, or
None for any), ``model_args`` (extra config keys the builder takes, with
their defaults), ``never_prune`` (glob patterns of weights the default
prunable set leaves dense), ``also_prune`` (glob patterns of parameters of
custom layers to prune besides every Linear and convolution weight; every
parameter with two or more axes must be pruned or named in ``never_prune``:
``models.prunable_keys``), ``fused`` (channel-stacked fused training works),
``fused_engine_cpu`` ("grouped" or "mlp"), ``stream_points`` (the
``match.stream_points`` its ``permutation_spec`` knows; default
``["stage_output"]``), ``cost`` (``epoch_minutes`` at width
1 on one GPU for a CIFAR-sized epoch, ``cpu_slowdown``, ``width_exponent``,
``gflops_per_image``; ``act_mb_per_image``, the activations a training step
keeps for backward per image in fp32, and ``params_m``, millions of
parameters, both at width 1 and measured once, for the fused jobs' memory
budget). Dataset card keys: ``name``, ``label``,
``num_classes``, ``in_channels``, ``input_shape``, ``mean``, ``std``,
``augment``, ``flip``, ``download`` (torchvision class and split arguments,
or None), ``scale`` (epoch cost relative to CIFAR), ``n_train`` (images per epoch), ``host_mem_mb``.
"""

from __future__ import annotations

import ast
import functools
import importlib
import importlib.util
import os
from pathlib import Path

PLUGINS_ENV = "SPARSEBASIN_PLUGINS"
# card keys an architecture may leave out: where matching may cut its residual stream, which weights
# pruning leaves dense and which parameters of custom layers it prunes besides every Conv/Linear weight
ARCH_DEFAULTS = {"stream_points": ["stage_output"], "never_prune": [], "also_prune": []}
_HERE = Path(__file__).resolve().parent


def _literal(path: Path, var: str):
    """The literal assigned to ``var`` at the top level of a Python file, or None (nothing executed)."""
    try:
        tree = ast.parse(path.read_text(), filename=str(path))
    except (OSError, SyntaxError):
        return None
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == var for t in node.targets):
            return ast.literal_eval(node.value)
    return None


def _module_files(package_dir: Path, package: str) -> list[tuple[str, Path]]:
    out = [(f"{package}.{p.stem}", p) for p in sorted(package_dir.glob("*.py")) if not p.name.startswith("_")]
    for name in filter(None, (m.strip() for m in os.environ.get(PLUGINS_ENV, "").split(","))):
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            raise ImportError(f"{PLUGINS_ENV} names module {name!r}, which is not importable; fix PYTHONPATH")
        out.append((name, Path(spec.origin)))
    return out


@functools.lru_cache(maxsize=None)
def _cards(kind: str, env: str) -> dict[str, dict]:
    package, var, many = {"arch": ("sparsebasin.models", "ARCH", False),
                          "dataset": ("sparsebasin.data", "DATASETS", True)}[kind]
    found: dict[str, dict] = {}
    for module, path in _module_files(_HERE / package.split(".")[-1], package):
        value = _literal(path, var)
        if value is None:
            continue
        for card in (value if many else [value]):
            name = card["name"]
            if name in found:
                raise ImportError(f"{kind} {name!r} is described twice ({found[name]['module']} and {module})")
            found[name] = {**(ARCH_DEFAULTS if kind == "arch" else {}), **card, "module": module}
    return found


def architectures() -> dict[str, dict]:
    """name -> architecture card (with ``module``), in discovery order."""
    return _cards("arch", os.environ.get(PLUGINS_ENV, ""))


def datasets() -> dict[str, dict]:
    """name -> dataset card (with ``module``)."""
    return _cards("dataset", os.environ.get(PLUGINS_ENV, ""))


def architecture(name: str) -> dict:
    from .errors import UserError

    cards = architectures()
    if str(name).lower() not in cards:
        raise UserError(f"unknown model {name!r}; choose one of: {', '.join(cards)}")
    return cards[str(name).lower()]


def dataset(name: str) -> dict:
    from .errors import UserError

    cards = datasets()
    if str(name).lower() not in cards:
        raise UserError(f"unknown dataset {name!r}; choose one of: {', '.join(cards)}")
    return cards[str(name).lower()]


def module(card: dict):
    """Import the module a card came from (this is where torch comes in)."""
    return importlib.import_module(card["module"])


def model_names() -> tuple[str, ...]:
    return tuple(architectures())


def dataset_names() -> tuple[str, ...]:
    return tuple(datasets())


def labels() -> dict[str, str]:
    """Display names of every architecture and dataset."""
    return {**{n: c["label"] for n, c in architectures().items()}, **{n: c["label"] for n, c in datasets().items()}}
