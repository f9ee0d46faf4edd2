"""Loss landscapes between trained checkpoints: the linear path A -> B (or pi(A) -> B) and the plane
through three models, evaluated and written as tidy CSV with provenance.

The steps ``sparsebasin interpolate`` and ``sparsebasin plane`` are thin CLIs
over ``interpolate_checkpoints`` and ``plane_through``; ``sparsebasin.symmetry.lmc``
holds the geometry and the BN-reset / REPAIR modes.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from ..options import DataOptions, option


@dataclass(frozen=True)
class EvalOptions:
    """How points are evaluated: the ``interpolate``/``plane`` evaluation options, the config's ``lmc``,
    ``imp_barrier`` and ``plane`` sections (the plan passes the ones a section sets: ``options.section_argv``)
    and their part of the key (``options.section_key``), one declaration each."""

    batch_size: int = option("examples per evaluation batch", "positive_int", 500)
    eval_batches: int | None = option("evaluate on the first N batches of each split (default: all)", "positive_int",
                                      None)
    reset_batches: int = option("training batches for BN reset and REPAIR statistics", "positive_int", 20)
    sample_seed: int = option("seed of the random samples behind --reset-batches and --eval-batches", "seed", 0)
    splits: tuple[str, ...] = option("comma-separated splits to evaluate", "splits", ("train", "test"))
    train_eval_examples: int | None = option(
        "evaluate the train split on a seeded random sample of N examples, the other splits whole (default: as "
        "the other splits); the sample is recorded", "positive_int", None, metavar="N")


def _log(msg: str) -> None:
    from .. import distributed

    if distributed.writer():  # data-parallel: every rank has the same numbers; rank 0 says them
        print(msg, file=sys.stderr, flush=True)


def _write(write, *args) -> None:
    """Data-parallel: rank 0 writes the outputs (every rank computed the same rows)."""
    from .. import distributed

    if distributed.writer():
        write(*args)


def _setup(data: DataOptions, ev: EvalOptions, device: str, ckpt: dict, source):
    """Device, evaluation config, training set and evaluation splits (which must be the data ``ckpt`` fits)."""
    from .. import device as devices
    from ..data import check_fits
    from .lmc import EvalConfig

    dev = devices.resolve(device)
    cfg = EvalConfig(device=dev, batch_size=ev.batch_size, eval_batches=ev.eval_batches,
                     reset_batches=ev.reset_batches, sample_seed=ev.sample_seed,
                     train_examples=ev.train_eval_examples)
    if ev.train_eval_examples is not None and "train" not in ev.splits:
        from .. import unhonoured

        cfg.samples["eval_train"] = {"unhonoured": unhonoured.note(
            "--train-eval-examples", ev.train_eval_examples, None, "the train split is not evaluated (--splits)")}
    train = data.load("train")
    sets = {s: (train if s == "train" else data.load("test")) for s in ev.splits}
    for ds in (train, *sets.values()):  # classes and inputs as read, not the card's
        check_fits(ckpt["data"], ds, source, data.data_dir)
    return dev, cfg, train, sets


def _eval_record(ev: EvalOptions, cfg, sets) -> dict:
    return {"batch_size": ev.batch_size, "eval_batches": ev.eval_batches, "reset_batches": ev.reset_batches,
            "sample_seed": ev.sample_seed, "train_examples": ev.train_eval_examples, "samples": cfg.samples,
            "splits": list(sets)}


def _point_log(out, step: str, dev, states: dict, config: dict):
    """The resumable record of finished points, under everything that decides their numbers."""
    from ..training.resume import tensor_digest
    from .pointlog import PointLog

    identity = {"step": step, "device": dev.type, "config": config,
                "tensors": {name: tensor_digest(sd) for name, sd in states.items() if sd is not None}}
    return PointLog(out, identity, step)


def interpolate_checkpoints(a: str | Path, b: str | Path, *, permutation: str | Path | None, data: DataOptions,
                            alphas: int, modes, ev: EvalOptions, out: str | Path, barriers_out: str | Path,
                            device: str = "auto", tags: dict | None = None) -> dict:
    """Evaluate the path A -> B (and pi(A) -> B with ``permutation``); write the curve CSV and barriers JSON."""
    from .. import device as devices
    from .. import provenance
    from ..checkpoints import load_checkpoint, model_from_checkpoint, same_architecture
    from ..io import write_json
    from .lmc import alpha_grid, barriers, lmc, nonfinite_rows, parse_modes
    from .permfile import load_permutation
    from .results import check_dataset, write_csv
    from .spec import permutation_spec

    tags = dict(tags or {})
    grid = alpha_grid(alphas)
    modes = parse_modes(modes)
    ckpt_a, ckpt_b = load_checkpoint(a), load_checkpoint(b)
    same_architecture(ckpt_a, ckpt_b, a, b)
    check_dataset(ckpt_a, data.dataset, a)
    model = model_from_checkpoint(ckpt_a, a)
    spec = permutation_spec(model)
    perm = None
    if permutation:
        pobj, _ = load_permutation(permutation, spec)
        same_architecture(pobj, ckpt_a, permutation, a)
        perm = pobj["perm"]
    dev, cfg, train, sets = _setup(data, ev, device, ckpt_a, a)
    model = devices.prepare_model(model, dev)
    sd_a = {k: v.to(dev) for k, v in ckpt_a["state_dict"].items()}
    sd_b = {k: v.to(dev) for k, v in ckpt_b["state_dict"].items()}
    decides = {**data.record(), "alphas": grid, "modes": modes, **_eval_record(ev, cfg, sets)}
    points = _point_log(out, "interpolate", dev, {"a": sd_a, "b": sd_b, "perm": perm},
                        {k: v for k, v in decides.items() if k != "samples"})
    cfg.samples.update(points.samples)
    rows = lmc(model, spec, sd_a, sd_b, perm, grid, modes, train, sets, cfg, log=_log, points=points)
    config = {"step": "interpolate", "a": str(a), "b": str(b), "permutation": permutation and str(permutation),
              **decides, "tags": tags}
    prov = provenance.collect(config=config, device=dev)
    _write(write_csv, out, rows, tags, {**prov, "nonfinite": nonfinite_rows(rows, ("alpha", "mode", "permuted",
                                                                                 "split"))})
    nonfinite: dict[str, str] = {}
    result = {
        "barriers": barriers(rows, nonfinite),
        "nonfinite": nonfinite,
        "epoch_a": int(ckpt_a["epoch"]),
        "epoch_b": int(ckpt_b["epoch"]),
        "inputs": {"a": str(a), "b": str(b), "permutation": permutation and str(permutation)},
        "samples": cfg.samples,
        "tags": tags,
        "provenance": prov,
    }
    _write(write_json, barriers_out, result)
    points.close()
    for r in result["barriers"]:
        _log(f"{r['mode']:8s} permuted={r['permuted']!s:5s} {r['split']:5s} loss barrier {_num(r['loss_barrier'])} "
             f"error barrier {_num(r['error_barrier'])}")
    if nonfinite:
        _log(f"warning: {len(nonfinite)} value(s) of {barriers_out} are not finite and written as null "
             f"({next(iter(nonfinite.values()))}); see its 'nonfinite' entry")
    return result


def _num(x) -> str:
    return "not finite (null)" if x is None else f"{x:.4f}"


def plane_through(origin: str | Path, p1: str | Path, p2: str | Path, *, p2_permutation: str | Path | None,
                  inverse: bool, data: DataOptions, grid: int, margin: float, mode: str, ev: EvalOptions,
                  out: str | Path, device: str = "auto", tags: dict | None = None) -> list[dict]:
    """Evaluate the plane through origin, p1 and p2 (p2 optionally permuted, e.g. by pi^-1); write the CSV."""
    from .. import device as devices
    from .. import provenance
    from ..checkpoints import check_state_dict, load_checkpoint, model_from_checkpoint, same_architecture
    from ..errors import UserError
    from .apply import permute_state
    from .lmc import nonfinite_rows, plane
    from .permfile import load_permutation
    from .results import check_dataset, write_csv
    from .spec import permutation_spec

    tags = dict(tags or {})
    if inverse and not p2_permutation:
        raise UserError("--inverse needs --p2-permutation")
    files = {"origin": origin, "p1": p1, "p2": p2}
    ckpts = {name: load_checkpoint(path) for name, path in files.items()}
    same_architecture(ckpts["origin"], ckpts["p1"], origin, p1)
    same_architecture(ckpts["origin"], ckpts["p2"], origin, p2)
    check_dataset(ckpts["origin"], data.dataset, origin)
    model = model_from_checkpoint(ckpts["origin"], origin)
    spec = permutation_spec(model)
    sds = {}
    for name, ck in ckpts.items():
        check_state_dict(ck["state_dict"], model, files[name])
        sds[name] = ck["state_dict"]
    if p2_permutation:
        pobj, _ = load_permutation(p2_permutation, spec)
        same_architecture(pobj, ckpts["p2"], p2_permutation, p2)
        sds["p2"] = permute_state(spec, pobj["perm"], sds["p2"], inverse=inverse, source=f"checkpoint {p2}")
    dev, cfg, train, sets = _setup(data, ev, device, ckpts["origin"], origin)
    model = devices.prepare_model(model, dev)
    sds = {n: {k: v.to(dev) for k, v in sd.items()} for n, sd in sds.items()}
    decides = {**data.record(), "grid": grid, "margin": margin, "mode": mode, **_eval_record(ev, cfg, sets)}
    points = _point_log(out, "plane", dev, sds, {k: v for k, v in decides.items() if k != "samples"})
    cfg.samples.update(points.samples)
    rows, geom = plane(model, sds["origin"], sds["p1"], sds["p2"], grid, margin, mode, train, sets, cfg, log=_log,
                       points=points)
    config = {"step": "plane", "origin": str(origin), "p1": str(p1), "p2": str(p2),
              "p2_permutation": p2_permutation and str(p2_permutation), "inverse": bool(inverse), **decides,
              "anchors": geom.anchors(), "tags": tags}
    nonfinite = nonfinite_rows(rows, ("point", "u", "v", "split"))
    _write(write_csv, out, rows, tags, {**provenance.collect(config=config, device=dev), "nonfinite": nonfinite})
    points.close()
    if nonfinite:
        _log(f"warning: {out}: loss, acc and error {nonfinite['loss']}")
    return rows


__all__ = ["EvalOptions", "interpolate_checkpoints", "plane_through"]
