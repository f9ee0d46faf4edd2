"""Dry-run time of the workflow: ``snakemake -n --quiet`` for each paper config and a synthetic 10x grid.

Each config is dry-run in an empty working directory (``-d TMP``, so the
whole DAG is built: nothing counts as done) ``--rounds`` times; the median
wall time is reported with the job count (one extra ``--quiet rules host
reason`` run per config prints the job table). The synthetic grid is the
largest paper config (by jobs) with every experiment repeated ten times
under new names (``<name>_x0`` ... ``<name>_x9``): ten times the cells, the
runs and the jobs. The check: the largest paper config's dry run stays under
``--limit`` seconds (15): PASS/FAIL.

    .venv/bin/python benchmarks/bench_dag.py
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from _bench import REPO, load_average, write_results


def dry_run(configfile: Path, snakemake: str, quiet=("--quiet",)) -> tuple[float, str]:
    with tempfile.TemporaryDirectory(prefix="bench_dag_") as tmp:
        cmd = [snakemake, "-s", str(REPO / "Snakefile"), "-d", tmp, "-n", *quiet, "--configfile", str(configfile)]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"dry run of {configfile} failed:\n{(proc.stderr + proc.stdout)[-3000:]}")
    return seconds, proc.stdout + proc.stderr


def job_count(configfile: Path, snakemake: str) -> int:
    _, out = dry_run(configfile, snakemake, quiet=("--quiet", "rules", "host", "reason"))
    m = re.search(r"^total\s+(\d+)", out, re.MULTILINE)
    return int(m.group(1)) if m else 0


def synthetic(config: Path, factor: int, tmp: Path) -> Path:
    """``config`` with every experiment repeated ``factor`` times under new names."""
    cfg = yaml.safe_load(config.read_text(encoding="utf-8"))
    cfg["experiments"] = {f"{name}_x{i}": exp for i in range(factor) for name, exp in cfg["experiments"].items()}
    out = tmp / f"{config.stem}_x{factor}.yaml"
    out.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", nargs="*", default=None, help="default: config/*.yaml")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--factor", type=int, default=10)
    p.add_argument("--limit", type=float, default=15.0)
    p.add_argument("--snakemake", default=str(Path(sys.executable).parent / "snakemake"))
    p.add_argument("--out", default="dag")
    args = p.parse_args()
    configs = [Path(c) for c in args.configs] if args.configs else sorted((REPO / "config").glob("*.yaml"))
    print(f"snakemake -n --quiet, median of {args.rounds} (load {load_average():.1f})")
    rows = {}
    with tempfile.TemporaryDirectory(prefix="bench_dag_cfg_") as tmpdir:
        for c in configs:
            jobs = job_count(c, args.snakemake)
            secs = [dry_run(c, args.snakemake)[0] for _ in range(args.rounds)]
            rows[c.stem] = {"config": str(c), "jobs": jobs, "seconds": secs, "median_seconds": statistics.median(secs)}
            print(f"  {c.stem:20s} {jobs:>6,} jobs  {statistics.median(secs):6.2f} s  (runs: "
                  f"{', '.join(f'{s:.2f}' for s in secs)})", flush=True)
        largest = max(rows, key=lambda k: rows[k]["jobs"])
        big = synthetic(Path(rows[largest]["config"]), args.factor, Path(tmpdir))
        jobs = job_count(big, args.snakemake)
        secs = [dry_run(big, args.snakemake)[0] for _ in range(args.rounds)]
        synth = {"from": largest, "factor": args.factor, "jobs": jobs, "seconds": secs,
                 "median_seconds": statistics.median(secs)}
        print(f"  {largest}_x{args.factor:<13d} {jobs:>6,} jobs  {synth['median_seconds']:6.2f} s  (runs: "
              f"{', '.join(f'{s:.2f}' for s in secs)})")
    t = rows[largest]["median_seconds"]
    verdict = "PASS" if t < args.limit else "FAIL"
    print(f"{verdict}: largest paper config {largest} ({rows[largest]['jobs']:,} jobs) dry-runs in {t:.2f} s "
          f"(limit {args.limit:g} s); {args.factor}x grid: {synth['median_seconds']:.2f} s for {synth['jobs']:,} jobs")
    write_results(args.out, {"configs": rows, "synthetic": synth, "largest": largest, "limit_seconds": args.limit,
                             "verdict": verdict})
    sys.exit(0 if verdict == "PASS" else 1)


if __name__ == "__main__":
    main()
