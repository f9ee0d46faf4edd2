"""Compare two results trees: are the numbers of every run identical?

    python benchmarks/compare_results.py RESULTS_A RESULTS_B [--atol 0] [--by-content]

For every ``.pt`` both trees hold: every tensor (the provenance ignored) is
``torch.equal`` (or within ``--atol``); for every ``result.json``, ensemble,
barrier and match summary JSON: every number outside ``provenance`` and
timing fields equal; for every CSV (tidy tables, curves, tables, metrics):
every numeric cell equal, timing columns ignored. Logs, benchmarks, figures
and the Markdown files are skipped (they hold times and paths). Prints one
line per difference, a summary, and exits 1 if anything differs or a file
is in one tree only. Used to show that a refactoring changes no result.

``--by-content`` compares trees whose run directories are laid out
differently (a new results grammar): every file inside a run directory
(``runs/...`` or an experiment's ``.../seed{s}/...``) is reduced to a digest
of its numbers, and the two trees must hold the same multiset of
(file name, digest); the experiment-level files (tidy tables, paper tables,
ensembles) are still compared path by path.
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
    na = dict(numbers(json.loads(a.read_text(encoding="utf-8"))))
    nb = dict(numbers(json.loads(b.read_text(encoding="utf-8"))))
    out = [f"{k}: only in one file" for k in sorted(set(na) ^ set(nb))]
    out += [f"{k}: {na[k]!r} vs {nb[k]!r}" for k in sorted(set(na) & set(nb)) if not close(na[k], nb[k], atol)]
    return out


def compare_csv(a: Path, b: Path, atol: float) -> list[str]:
    ra = list(csv.DictReader(a.read_text(encoding="utf-8").splitlines()))
    rb = list(csv.DictReader(b.read_text(encoding="utf-8").splitlines()))
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


def _is_run_file(rel: str) -> bool:
    parts = rel.split("/")
    return parts[0] == "runs" or any(p.startswith("seed") and p[4:].isdigit() for p in parts)


def digest(path: Path) -> str:
    """A digest of a file's numbers (tensors of a .pt; numbers of a JSON or CSV, timings and paths left out)."""
    import hashlib

    h = hashlib.sha256()
    if path.suffix == ".pt":
        for k, t in sorted(tensors(safe_torch_load(path, path, "file"))):
            h.update(f"{k}|{t.dtype}|{tuple(t.shape)}|".encode())
            h.update(t.contiguous().view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    elif path.suffix == ".json":
        h.update(repr(sorted(numbers(json.loads(path.read_text(encoding="utf-8"))))).encode())
    else:
        for row in csv.DictReader(path.read_text(encoding="utf-8").splitlines()):
            for col in sorted(set(row) - SKIP_KEYS):
                try:
                    h.update(f"{col}={float(row[col])!r};".encode())
                except (TypeError, ValueError):
                    pass
    return h.hexdigest()


def compare_by_content(fa: dict, fb: dict) -> tuple[list[str], dict]:
    from collections import Counter

    runs_a = Counter((Path(k).name, digest(p)) for k, p in fa.items() if _is_run_file(k))
    runs_b = Counter((Path(k).name, digest(p)) for k, p in fb.items() if _is_run_file(k))
    problems = [f"run file {name} (digest {d[:12]}) x{n} only in A" for (name, d), n in (runs_a - runs_b).items()]
    problems += [f"run file {name} (digest {d[:12]}) x{n} only in B" for (name, d), n in (runs_b - runs_a).items()]
    return problems, {"run files": sum(runs_a.values())}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("a", type=Path)
    p.add_argument("b", type=Path)
    p.add_argument("--atol", type=float, default=0.0, help="absolute tolerance (default 0: bit-identical)")
    p.add_argument("--by-content", action="store_true", help="run directories laid out differently: compare contents")
    args = p.parse_args(argv)
    fa, fb = files(args.a), files(args.b)
    problems = []
    if args.by_content:
        problems, counts = compare_by_content(fa, fb)
        print(f"compared {counts['run files']} run files by content")
        fa = {k: v for k, v in fa.items() if not _is_run_file(k)}
        fb = {k: v for k, v in fb.items() if not _is_run_file(k)}
    problems += [f"only in {args.a}: {k}" for k in sorted(set(fa) - set(fb))]
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
