"""``sparsebasin permute``: apply a permutation (or its inverse) to a mask or a checkpoint.

The input's architecture must be the permutation's (same model cfg and data
shape); every other field of the file (epoch, sparsity report, ...) is kept,
and the provenance records the input's own provenance.
"""

from __future__ import annotations

import argparse

from .common import StepPaths


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--permutation", required=True, metavar="PERM.pt")
    p.add_argument("--input", required=True, metavar="FILE", help="a mask or checkpoint artifact")
    p.add_argument("--out", required=True, metavar="FILE")
    p.add_argument("--inverse", action="store_true", help="apply the inverse permutation (map pi(A) back to A)")


def run(args: argparse.Namespace) -> None:
    from .. import provenance
    from ..checkpoints import check_mask, check_state_dict, same_architecture
    from ..errors import UserError
    from ..io import load_any_artifact, save_artifact
    from ..symmetry.apply import permute_state
    from ..symmetry.permfile import load_permutation
    from ..symmetry.spec import spec_from_meta

    pobj, _ = load_permutation(args.permutation)
    kind, obj = load_any_artifact(args.input, ("mask", "checkpoint"))
    for key in ("model", "data", "mask" if kind == "mask" else "state_dict"):
        if key not in obj:
            raise UserError(f"{kind} {args.input} has no {key!r}; it was not written by sparsebasin")
    same_architecture(pobj, obj, args.permutation, args.input)
    model, spec = spec_from_meta(obj["model"], obj["data"])
    perm = pobj["perm"]
    payload = {k: v for k, v in obj.items() if k not in ("format", "provenance")}
    if kind == "mask":
        check_mask(obj["mask"], model, args.input)
        payload["mask"] = permute_state(spec, perm, obj["mask"], inverse=args.inverse, source=f"mask {args.input}")
    else:
        check_state_dict(obj["state_dict"], model, args.input)
        payload["state_dict"] = permute_state(spec, perm, obj["state_dict"], inverse=args.inverse,
                                              source=f"checkpoint {args.input}")
    prov = provenance.collect(config={
        "step": "permute", "permutation": args.permutation, "input": args.input, "inverse": bool(args.inverse),
        "input_provenance": obj.get("provenance", {}), "permutation_meta": pobj.get("meta", {}),
    })
    save_artifact(args.out, kind, payload, prov)
    print(f"wrote {'inverse-' if args.inverse else ''}permuted {kind} {args.out}")


def paths(args: argparse.Namespace) -> StepPaths:
    return StepPaths(inputs=[("--permutation", args.permutation), ("--input", args.input)],
                     outputs=[("--out", args.out)])
