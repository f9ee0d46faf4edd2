"""Argument groups shared by the step CLIs, so every step spells options alike."""

from __future__ import annotations

import argparse

from ..models import MODEL_NAMES

DATASETS = ("mnist1d", "cifar10", "cifar100", "svhn", "imagenet")


def add_data_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--dataset", required=True, choices=DATASETS)
    g.add_argument("--data-dir", default="data", help="dataset root (default: data)")
    g.add_argument("--train-subset", type=int, default=None, help="use only the first N training examples (tests)")


def add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--model", required=True, choices=MODEL_NAMES)
    g.add_argument("--width", type=int, default=1, help="width multiplier")
    g.add_argument("--depth", type=int, default=None, help="MLP hidden layers (default 2)")
    g.add_argument("--hidden", type=int, default=None, help="MLP units per hidden layer at width 1 (default 128)")


def model_cfg_from_args(args: argparse.Namespace) -> dict:
    cfg = {"name": args.model, "width": args.width}
    if getattr(args, "depth", None) is not None:
        cfg["depth"] = args.depth
    if getattr(args, "hidden", None) is not None:
        cfg["hidden"] = args.hidden
    return cfg


def add_optim_args(p: argparse.ArgumentParser, preset_default: str = "dense") -> None:
    g = p.add_argument_group("optimisation (unset values come from --preset)")
    g.add_argument("--preset", default=preset_default, help=f"named hyper-parameter preset (default {preset_default})")
    g.add_argument("--epochs", type=int, default=None)
    g.add_argument("--lr", type=float, default=None)
    g.add_argument("--momentum", type=float, default=None)
    g.add_argument("--weight-decay", type=float, default=None)
    g.add_argument("--batch-size", type=int, default=None)
    g.add_argument("--warmup-epochs", type=float, default=None)
    g.add_argument("--augment", choices=("auto", "on", "off"), default="auto",
                   help="random crop + flip (auto: on for image datasets)")


def add_run_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("run")
    g.add_argument("--seed", type=int, default=0, help="weight-init seed")
    g.add_argument("--data-seed", type=int, default=None, help="data-order seed (default: --seed)")
    g.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    g.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
    g.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE",
                   help="label recorded in result.json (repeatable), e.g. --tag branch=permuted")
    g.add_argument("--progress", choices=("auto", "bar", "log"), default="auto")


def parse_tags(tags: list[str]) -> dict:
    from ..errors import UserError

    out = {}
    for t in tags:
        if "=" not in t:
            raise UserError(f"--tag {t!r} must look like KEY=VALUE")
        k, v = t.split("=", 1)
        out[k] = v
    return out


def parse_int_list(text: str | None) -> list[int]:
    from ..errors import UserError

    if not text:
        return []
    try:
        return sorted({int(t) for t in text.split(",") if t.strip()})
    except ValueError as exc:
        raise UserError(f"expected comma-separated integers, got {text!r}") from exc


def parse_float_list(text: str | None) -> list[float]:
    from ..errors import UserError

    if not text:
        return []
    try:
        return [float(t) for t in text.split(",") if t.strip()]
    except ValueError as exc:
        raise UserError(f"expected comma-separated numbers, got {text!r}") from exc
