"""``python -m sparsebasin <step>``: one subcommand per pipeline step.

Steps are imported lazily so ``--help`` and light steps start fast. Each step
module defines ``add_arguments(parser)`` and ``run(args)``. Every mistake a
user can fix ends in ONE line on stderr and exit status 2, never a
traceback: a ``UserError``, a bad option (argparse's usage block is left to
``--help``), and an operating-system failure such as a full disk or a
read-only directory, wherever in the step it surfaced (also when a library
wrapped it in another exception, as matplotlib does after ENOSPC). Anything
else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import sys

from .errors import UserError, os_error_in
from .steps.common import check_paths

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
    "scorecard": ("sparsebasin.steps.scorecard", "every cell against the paper's published number"),
    "plan": ("sparsebasin.steps.plan", "list a config's jobs and where their results live (torch-free)"),
}


def _load(step: str):
    module_name, _ = STEPS[step]
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            raise UserError(f"step {step!r} is not available in this version") from exc
        raise


class StepParser(argparse.ArgumentParser):
    """argparse with one-line errors: ``error: argument --hidden: must be a positive integer, got '-4'``."""

    def error(self, message: str):  # noqa: D401 - argparse's hook
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


_OS_HINTS = {
    errno.ENOSPC: "free space, then rerun (finished files are intact)",
    errno.EDQUOT: "free space or raise your quota, then rerun (finished files are intact)",
    errno.EACCES: "fix the permissions or choose another directory",
    errno.EPERM: "fix the permissions or choose another directory",
    errno.EROFS: "the file system is read-only: choose a writable directory",
    errno.ENOENT: "check the path",
    errno.ENOTDIR: "a path component is a file, not a directory: choose another path",
    errno.EISDIR: "pass a file, not a directory",
}


def describe_os_error(exc: OSError) -> str:
    """One line for an operating-system failure: the file, what happened, what to do."""
    where = exc.filename if exc.filename is not None else "a file"
    what = exc.strerror or str(exc)
    return f"{where}: {what}; {_OS_HINTS.get(exc.errno, 'check the path, permissions and free space, then rerun')}"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="sparsebasin", description=__doc__.splitlines()[0].replace("``", ""),
                                     epilog="Each step has its own --help: sparsebasin <step> --help.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="step", metavar="STEP")
    for name, (_, help_) in STEPS.items():
        sub.add_parser(name, help=help_, add_help=False)
    if argv and argv[0] in ("--version", "-V"):
        from . import __version__

        print(f"sparsebasin {__version__}")
        return 0
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in STEPS:
        if argv and argv[0] not in ("-h", "--help"):
            print(f"error: unknown step {argv[0]!r}; choose one of: {', '.join(STEPS)}", file=sys.stderr)
            return 2
        parser.print_help()
        return 0
    step = argv[0]
    try:
        module = _load(step)
        step_parser = StepParser(prog=f"sparsebasin {step}", description=STEPS[step][1])
        module.add_arguments(step_parser)
        args = step_parser.parse_args(argv[1:])
        check_paths(module.paths(args))  # before any work: no output may destroy an input
        from .distributed import refuse_launch

        refuse_launch(step)
        module.run(args)
        if "sparsebasin.distributed" in sys.modules:  # leave the process group cleanly (torchrun runs)
            sys.modules["sparsebasin.distributed"].shutdown()
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        os_error = os_error_in(exc)
        if os_error is None:
            oom = _out_of_memory(exc)
            if oom is None:
                raise  # a bug: keep the traceback
            print(f"error: {oom}", file=sys.stderr)
            return 2
        print(f"error: {describe_os_error(os_error)}", file=sys.stderr)
        return 2
    return 0


def _out_of_memory(exc: BaseException) -> str | None:
    if isinstance(exc, MemoryError) or "out of memory" in str(exc).lower():
        return ("out of memory (" + (str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__) + "); "
                "lower --batch-size (or --chunk, --eval-batches), or ask the job for more memory")
    return None


if __name__ == "__main__":
    sys.exit(main())
