"""``sparsebasin fused``: several small runs of one architecture trained as one stacked model.

Each run writes the run directory ``train``/``sparse`` would write; a run
with ``branch`` is exactly a ``sparse`` run (same checks, tags, run name).
Runs come from ``--runs RUNS.json`` (a list of objects) and/or repeated
``--run out_dir=DIR,init=CKPT,mask=MASK,branch=lth,seed=N,data_seed=N,name=N,tag.K=V``.
"""

from __future__ import annotations

import argparse

from ..branches import BRANCHES
from ..training.config import FUSED_ENGINES
from .common import (EPOCH_LIST, StepPaths, add_data_args, add_force_arg, add_model_args, add_optim_args,
                     add_run_args, data_options, model_cfg_from_args, optim_overrides, run_options)


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("runs (one group: same model, data, schedule)")
    g.add_argument("--runs", default=None, metavar="RUNS.json",
                   help='JSON list of runs: {"out_dir", "init" | "seed", "mask", "branch", "data_seed", "name", '
                        '"tags": {K: V}}; or {"runs": [...]}')
    g.add_argument("--run", action="append", default=[], metavar="KEY=VALUE,...",
                   help=f"one run (repeatable): out_dir=DIR,init=CKPT,mask=MASK,branch={'|'.join(BRANCHES)},"
                        "mask_permutation=PERM,signs_from=CKPT,mask_seed=N,seed=N,data_seed=N,name=NAME,tag.K=V "
                        "(no commas inside values)")
    add_data_args(p)
    add_model_args(p, required=False)
    add_optim_args(p, preset_default="sparse")
    add_run_args(p)
    o = p.add_argument_group("outputs")
    o.add_argument("--save-epochs", type=EPOCH_LIST, default=[],
                   help="comma-separated epochs to checkpoint in every run (0 = the start)")
    o.add_argument("--engine", choices=FUSED_ENGINES, default="auto",
                   help="auto: batched-matmul MLP engine on CPU for the MLP, grouped autograd engine otherwise")
    o.add_argument("--scratch", default=None, metavar="FILE",
                   help="group resume file (default: .fused.resume.pt in the first run's out_dir)")
    add_force_arg(p)


def run(args: argparse.Namespace) -> None:
    from ..errors import UserError
    from ..training import fused_run, resolve_config

    if args.compile != "none":
        raise UserError(f"fused: --compile {args.compile} is for single runs (a fused group already runs its members "
                        "in one set of launches); drop --compile, or train the runs separately")
    run = run_options(args)
    fused_run(runs=run_specs(args), model_cfg=model_cfg_from_args(args) if args.model is not None else None,
              data=data_options(args), cfg=resolve_config(args.preset, **optim_overrides(args)),
              default_seed=args.seed, default_data_seed=args.data_seed, save_epochs=args.save_epochs, run=run,
              engine=args.engine, scratch=args.scratch)


def run_specs(args: argparse.Namespace) -> list:
    """The group's runs from --runs and --run (parsed once per invocation)."""
    if getattr(args, "_specs", None) is None:
        from ..errors import UserError
        from ..training.runs import load_run_specs, parse_run_arg

        specs = load_run_specs(args.runs) if args.runs else []
        specs += [parse_run_arg(text) for text in args.run]
        if not specs:
            raise UserError("fused: give the group's runs with --runs RUNS.json or --run out_dir=...,init=...,mask=...")
        args._specs = specs
    return args._specs


def paths(args: argparse.Namespace) -> StepPaths:
    specs = run_specs(args)
    inputs = [("--runs", args.runs)]
    for s in specs:
        inputs += [(f"init of run {s.out_dir}", s.init), (f"mask of run {s.out_dir}", s.mask),
                   (f"mask permutation of run {s.out_dir}", s.mask_permutation),
                   (f"signs of run {s.out_dir}", s.signs_from)]
    return StepPaths(inputs=inputs, outputs=[("--scratch", args.scratch)],
                     out_dirs=[("run out_dir", s.out_dir) for s in specs])
