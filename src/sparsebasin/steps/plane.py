"""``sparsebasin plane``: loss and 0-1 error on the plane through three checkpoints (Fig. 4b).

Typically origin = dense A, p1 = the LTH solution, p2 = the permuted solution
mapped back to A's coordinates by ``--p2-permutation PERM.pt --inverse``.
Writes a CSV ``point, u, v, mode, split, loss, acc, error`` + tags (``point``
empty on grid rows, ``origin``/``p1``/``p2`` on the anchor rows; provenance in
``<csv>.provenance.json``). See ``sparsebasin.symmetry.lmc`` for the geometry.
"""

from __future__ import annotations

import argparse

from .common import NONNEG_FLOAT, Number, StepPaths, add_data_args, csv_outputs, parse_tags
from .interpolate import add_eval_args, log, setup

GRID = Number(int, "an integer >= 2 (grid points per axis)", 2)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--origin", required=True, metavar="CKPT")
    p.add_argument("--p1", required=True, metavar="CKPT")
    p.add_argument("--p2", required=True, metavar="CKPT")
    p.add_argument("--p2-permutation", default=None, metavar="PERM.pt", help="permute p2 before use")
    p.add_argument("--inverse", action="store_true", help="apply the inverse of --p2-permutation (pi^-1)")
    add_data_args(p)
    g = p.add_argument_group("plane")
    g.add_argument("--grid", type=GRID, default=21, help="grid points per axis (default 21)")
    g.add_argument("--margin", type=NONNEG_FLOAT, default=0.2,
                   help="extend the anchors' bounding box by this fraction on each side (default 0.2)")
    g.add_argument("--mode", choices=("plain", "bn_reset"), default="bn_reset",
                   help="BN statistics: as combined (plain) or recomputed at each point (bn_reset, default)")
    add_eval_args(p, splits="test")
    p.add_argument("--out", required=True, metavar="CSV")


def run(args: argparse.Namespace) -> None:
    from .. import device as devices
    from .. import provenance
    from ..checkpoints import check_state_dict, load_checkpoint, model_from_checkpoint, same_architecture
    from ..errors import UserError
    from ..symmetry.apply import permute_state
    from ..symmetry.lmc import plane
    from ..symmetry.permfile import load_permutation
    from ..symmetry.results import check_dataset, write_csv
    from ..symmetry.spec import permutation_spec

    tags = parse_tags(args.tag)
    if args.inverse and not args.p2_permutation:
        raise UserError("--inverse needs --p2-permutation")
    ckpts = {name: load_checkpoint(getattr(args, name)) for name in ("origin", "p1", "p2")}
    same_architecture(ckpts["origin"], ckpts["p1"], args.origin, args.p1)
    same_architecture(ckpts["origin"], ckpts["p2"], args.origin, args.p2)
    check_dataset(ckpts["origin"], args.dataset, args.origin)
    model = model_from_checkpoint(ckpts["origin"], args.origin)
    spec = permutation_spec(model)
    sds = {}
    for name, ck in ckpts.items():
        check_state_dict(ck["state_dict"], model, getattr(args, name))
        sds[name] = ck["state_dict"]
    if args.p2_permutation:
        pobj, _ = load_permutation(args.p2_permutation, spec)
        same_architecture(pobj, ckpts["p2"], args.p2_permutation, args.p2)
        sds["p2"] = permute_state(spec, pobj["perm"], sds["p2"], inverse=args.inverse, source=f"checkpoint {args.p2}")
    device, cfg, train, sets = setup(args)
    model = devices.prepare_model(model, device)
    sds = {n: {k: v.to(device) for k, v in sd.items()} for n, sd in sds.items()}
    rows, geom = plane(model, sds["origin"], sds["p1"], sds["p2"], args.grid, args.margin, args.mode, train, sets, cfg,
                       log=log)
    config = {
        "step": "plane", "origin": args.origin, "p1": args.p1, "p2": args.p2, "p2_permutation": args.p2_permutation,
        "inverse": bool(args.inverse), "dataset": args.dataset, "data_dir": args.data_dir,
        "train_subset": args.train_subset, "grid": args.grid, "margin": args.margin, "mode": args.mode,
        "batch_size": args.batch_size, "eval_batches": args.eval_batches, "reset_batches": args.reset_batches,
        "sample_seed": args.sample_seed, "samples": cfg.samples, "splits": list(sets), "anchors": geom.anchors(),
        "tags": tags,
    }
    write_csv(args.out, rows, tags, provenance.collect(config=config, device=device))


def paths(args: argparse.Namespace) -> StepPaths:
    return StepPaths(inputs=[("--origin", args.origin), ("--p1", args.p1), ("--p2", args.p2),
                             ("--p2-permutation", args.p2_permutation)],
                     outputs=csv_outputs("--out", args.out))
