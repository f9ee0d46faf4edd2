"""``python -m sparsebasin <step>``: one subcommand per pipeline step.

Steps are imported lazily so ``--help`` and light steps start fast. Each step
module defines ``add_arguments(parser)`` and ``run(args)``; a ``UserError``
becomes one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .errors import UserError

# step name -> (module, one-line help)
STEPS: dict[str, tuple[str, str]] = {
    "download": ("sparsebasin.steps.download", "fetch a dataset (login node; training never downloads)"),
    "prepare": ("sparsebasin.steps.prepare", "generate MNIST-1D offline / check a dataset is in place"),
    "train": ("sparsebasin.steps.train", "train a dense (or masked) model with rewind checkpoints"),
    "match": ("sparsebasin.steps.match", "find the permutation aligning model A to model B"),
    "permute": ("sparsebasin.steps.permute", "apply a permutation (or its inverse) to a mask or checkpoint"),
    "interpolate": ("sparsebasin.steps.interpolate", "loss/error along the linear path between two models"),
    "plane": ("sparsebasin.steps.plane", "0-1 loss on the plane through three models"),
    "prune": ("sparsebasin.steps.prune", "iterative magnitude pruning: masks per target sparsity"),
    "sparse": ("sparsebasin.steps.sparse", "one sparse run (lth / naive / permuted) from rewind point k"),
    "fused": ("sparsebasin.steps.fused", "several small runs of one architecture trained as one stacked model"),
    "ensemble": ("sparsebasin.steps.ensemble", "ensemble accuracy and diversity of a group of runs"),
    "collect": ("sparsebasin.steps.collect", "gather run results into tidy tables"),
    "figure": ("sparsebasin.steps.figure", "draw one figure from tidy tables"),
    "table": ("sparsebasin.steps.table", "write a paper table (CSV + Markdown) from tidy tables"),
    "summary": ("sparsebasin.steps.summary", "per-experiment summary.md"),
}


def _load(step: str):
    module_name, _ = STEPS[step]
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            raise UserError(f"step {step!r} is not available in this version") from exc
        raise


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="sparsebasin", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="step", metavar="STEP")
    for name, (_, help_) in STEPS.items():
        sub.add_parser(name, help=help_, add_help=False)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in STEPS:
        if argv and argv[0] not in ("-h", "--help"):
            print(f"error: unknown step {argv[0]!r}; choose one of: {', '.join(STEPS)}", file=sys.stderr)
            return 2
        parser.print_help()
        return 0
    step = argv[0]
    try:
        module = _load(step)
        step_parser = argparse.ArgumentParser(prog=f"sparsebasin {step}", description=STEPS[step][1])
        module.add_arguments(step_parser)
        args = step_parser.parse_args(argv[1:])
        module.run(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
