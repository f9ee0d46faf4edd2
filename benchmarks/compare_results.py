"""Compare two results trees: are the numbers of every run identical?

    python benchmarks/compare_results.py RESULTS_A RESULTS_B [--atol 0]

For every ``.pt`` both trees hold: every tensor (the provenance ignored) is
``torch.equal`` (or within ``--atol``); for every ``result.json``, ensemble,
barrier and match summary JSON: every number outside ``provenance`` and
timing fields equal; for every CSV (tidy tables, curves, tables, metrics):
every numeric cell equal, timing columns ignored. Logs, benchmarks, figures
and the Markdown files are skipped (they hold times and paths). Prints one
line per difference, a summary, and exits 1 if anything differs or a file
is in one tree only. Used to show that a refactoring changes no result.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path

import torch

from sparsebasin.io import safe_torch_load

SKIP_DIRS = {"logs", "benchmarks", "figures"}
TIMING = {"seconds", "images_per_s", "train_seconds", "time_utc", "hostname", "argv", "git_commit", "cpu_threads"}
SKIP_KEYS = {"provenance", "fingerprint", "request", "inputs", "source", "run"} | TIMING


def files(root: Path) -> dict[str, Path]:
    out = {}
    for p in root.rglob("*"):
        rel = p.relative_to(root)
        if not p.is_file() or set(rel.parts) & SKIP_DIRS or any(part.startswith(".") for part in rel.parts):
            continue
        if p.suffix in (".pt", ".json", ".csv") and not p.name.endswith(".provenance.json"):
            out[rel.as_posix()] = p
    return out


def tensors(obj, prefix=""):
    if isinstance(obj, torch.Tensor):
        yield prefix, obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            if not (prefix == "" and k in ("provenance",)):
                yield from tensors(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from tensors(v, f"{prefix}[{i}]")


def numbers(obj, prefix=""):
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return
    if isinstance(obj, (int, float)):
        yield prefix, float(obj)
    elif isinstance(obj, dict):
        for k, v in obj.items():
            if k not in SKIP_KEYS:
                yield from numbers(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from numbers(v, f"{prefix}[{i}]")


def close(a: float, b: float, atol: float) -> bool:
    if math.isnan(a) and math.isnan(b):
        return True
    return a == b or abs(a - b) <= atol


def compare_pt(a: Path, b: Path, atol: float) -> list[str]:
    ta = dict(tensors(safe_torch_load(a, a, "file")))  # older trees record torch's version as TorchVersion
    tb = dict(tensors(safe_torch_load(b, b, "file")))
    out = []
    if ta.keys() != tb.keys():
        return [f"tensor keys differ: {sorted(set(ta) ^ set(tb))[:5]}"]
    for k in ta:
        x, y = ta[k], tb[k]
        if x.dtype != y.dtype or x.shape != y.shape:
            out.append(f"{k}: {x.dtype}{tuple(x.shape)} vs {y.dtype}{tuple(y.shape)}")
        elif atol == 0 or not x.is_floating_point():
            if not torch.equal(x, y):
                out.append(f"{k}: not equal (max |diff| {float((x.double() - y.double()).abs().max()):.3g})")
        elif not torch.allclose(x, y, atol=atol, rtol=0, equal_nan=True):
            out.append(f"{k}: max |diff| {float((x - y).abs().max()):.3g} > {atol}")
    return out


def compare_json(a: Path, b: Path, atol: float) -> list[str]:
    na = dict(numbers(json.loads(a.read_text())))
    nb = dict(numbers(json.loads(b.read_text())))
    out = [f"{k}: only in one file" for k in sorted(set(na) ^ set(nb))]
    out += [f"{k}: {na[k]!r} vs {nb[k]!r}" for k in sorted(set(na) & set(nb)) if not close(na[k], nb[k], atol)]
    return out


def compare_csv(a: Path, b: Path, atol: float) -> list[str]:
    ra = list(csv.DictReader(a.read_text().splitlines()))
    rb = list(csv.DictReader(b.read_text().splitlines()))
    if len(ra) != len(rb):
        return [f"{len(ra)} rows vs {len(rb)}"]
    out = []
    for i, (x, y) in enumerate(zip(ra, rb)):
        for col in sorted((set(x) & set(y)) - SKIP_KEYS):
            try:
                fx, fy = float(x[col]), float(y[col])
            except (TypeError, ValueError):
                continue
            if not close(fx, fy, atol):
                out.append(f"row {i} {col}: {x[col]} vs {y[col]}")
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("a", type=Path)
    p.add_argument("b", type=Path)
    p.add_argument("--atol", type=float, default=0.0, help="absolute tolerance (default 0: bit-identical)")
    args = p.parse_args(argv)
    fa, fb = files(args.a), files(args.b)
    problems = [f"only in {args.a}: {k}" for k in sorted(set(fa) - set(fb))]
    problems += [f"only in {args.b}: {k}" for k in sorted(set(fb) - set(fa))]
    counts = {".pt": 0, ".json": 0, ".csv": 0}
    for rel in sorted(set(fa) & set(fb)):
        suffix = fa[rel].suffix
        fn = {".pt": compare_pt, ".json": compare_json, ".csv": compare_csv}[suffix]
        counts[suffix] += 1
        problems += [f"{rel}: {d}" for d in fn(fa[rel], fb[rel], args.atol)]
    for line in problems[:200]:
        print(line)
    print(f"compared {counts['.pt']} .pt, {counts['.json']} .json, {counts['.csv']} .csv files: "
          + ("identical" if not problems else f"{len(problems)} difference(s)"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
