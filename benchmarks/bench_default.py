"""Wall time of the built-in default workflow (config.yaml, MNIST-1D), per rule, from Snakemake's benchmark files.

Either launches the whole default workflow in a fresh directory
(``--launch``; ``snakemake --cores N -d DIR``, wall time measured around
it) or reads a finished run (``--workdir DIR``, default: the repository).
Every job's ``benchmark:`` TSV (``results/<experiment>/benchmarks/...``) is
mapped to its rule through a forced dry run of the same directory
(``snakemake -n -F``, which lists each job's rule and benchmark file), then
summed per rule: jobs, total / mean / max seconds, CPU seconds, peak RSS.
The serial sum of job times and the run's wall time (measured, or the first
to last timestamp of the newest ``.snakemake/log``) are printed together:
their ratio is the parallelism the scheduler achieved.

Start-up share: what each job pays before its step does any work, measured
here as the median wall time of a fresh ``python -c`` importing what the
job's step loads (torch and the training/symmetry library for the training
and evaluation steps; the step module alone for the torch-free analysis
steps), times the number of jobs, over the serial sum of job times.

    .venv/bin/python benchmarks/bench_default.py --launch --cores 2     # run it, then report
    .venv/bin/python benchmarks/bench_default.py --workdir /path/to/run # report on an existing run
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path

from _bench import REPO, load_average, write_results

STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]")


def rule_of_benchmarks(workdir: Path, snakemake: str, configfile: str | None) -> dict[str, str]:
    """benchmark file (relative to workdir) -> rule, from a forced dry run."""
    cmd = [snakemake, "-s", str(REPO / "Snakefile"), "-d", str(workdir), "-n", "-F", "--cores", "1"]
    if configfile:
        cmd += ["--configfile", configfile]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"forced dry run failed:\n{(proc.stderr + proc.stdout)[-3000:]}")
    mapping, rule = {}, None
    for line in (proc.stdout + proc.stderr).splitlines():
        m = re.match(r"^(?:local)?rule (\S+):", line)
        if m:
            rule = m.group(1)
        m = re.match(r"^\s+benchmark: (\S+)", line)
        if m and rule:
            mapping[m.group(1)] = rule
    return mapping


# what a job of each step imports before it works (steps.<name> for the torch-free analysis steps)
TORCH_IMPORTS = "import torch, sparsebasin.training, sparsebasin.symmetry.align, sparsebasin.symmetry.landscape"
LIGHT_STEPS = ("collect", "table", "figure", "summary", "scorecard")


def step_of(rule: str) -> str:
    """The sparsebasin step a rule runs (rule names are the step, a kind or kind_suffix)."""
    for step in LIGHT_STEPS:
        if rule == step or rule.startswith(step + "_"):
            return step
    return "torch"


def startup_seconds(step: str, repeats: int = 3) -> float:
    """Median wall time of a fresh interpreter importing what a job of ``step`` loads."""
    code = TORCH_IMPORTS if step == "torch" else f"import sparsebasin.cli, sparsebasin.steps.{step}"
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def read_tsv(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def log_wall_seconds(workdir: Path) -> float | None:
    logs = sorted((workdir / ".snakemake" / "log").glob("*.snakemake.log"))
    if not logs:
        return None
    stamps = []
    for line in logs[-1].read_text(encoding="utf-8", errors="replace").splitlines():
        m = STAMP.match(line)
        if m:
            stamps.append(datetime.strptime(" ".join(m.group(1).split()), "%a %b %d %H:%M:%S %Y"))
    return (stamps[-1] - stamps[0]).total_seconds() if len(stamps) > 1 else None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", default=None, help="a finished run's working directory (default: the repository)")
    p.add_argument("--launch", action="store_true", help="run the default workflow first (in --workdir or a new dir)")
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--configfile", default=None, help="another config (default: the built-in config.yaml)")
    p.add_argument("--snakemake", default=str(Path(sys.executable).parent / "snakemake"))
    p.add_argument("--out", default="default_workflow")
    args = p.parse_args()

    workdir = Path(args.workdir) if args.workdir else (Path(tempfile.mkdtemp(prefix="bench_default_"))
                                                       if args.launch else REPO)
    wall = None
    if args.launch:
        cmd = [args.snakemake, "-s", str(REPO / "Snakefile"), "-d", str(workdir), "--cores", str(args.cores)]
        if args.configfile:
            cmd += ["--configfile", args.configfile]
        print(f"launching: {' '.join(cmd)} (load {load_average():.1f})", flush=True)
        # As `make run` does: the jobs' `python` must be this environment's.
        env = dict(os.environ, PATH=f"{Path(args.snakemake).parent}{os.pathsep}{os.environ.get('PATH', '')}")
        workdir.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        with open(workdir / "bench_default.snakemake.log", "w", encoding="utf-8") as log:
            proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise SystemExit(f"the workflow failed after {wall:.0f} s; see {workdir / 'bench_default.snakemake.log'}")
        print(f"workflow finished in {wall:.1f} s")
    mapping = rule_of_benchmarks(workdir, args.snakemake, args.configfile)
    per_rule: dict = defaultdict(lambda: {"jobs": 0, "seconds": [], "cpu_seconds": 0.0, "max_rss_mb": 0.0})
    missing = []
    for rel, rule in mapping.items():
        path = workdir / rel
        if not path.exists():
            missing.append(rel)
            continue
        for row in read_tsv(path):
            r = per_rule[rule]
            r["jobs"] += 1
            r["seconds"].append(float(row["s"]))
            r["cpu_seconds"] += float(row.get("cpu_time") or 0.0)
            rss = row.get("max_rss", "NA")
            if rss not in ("NA", "", None):
                r["max_rss_mb"] = max(r["max_rss_mb"], float(rss))
    if not per_rule:
        raise SystemExit(f"no benchmark files under {workdir}/results; run the workflow first (or pass --launch)")
    wall = wall if wall is not None else log_wall_seconds(workdir)
    rules = {}
    for rule, r in sorted(per_rule.items(), key=lambda kv: -sum(kv[1]["seconds"])):
        s = r["seconds"]
        rules[rule] = {"jobs": r["jobs"], "total_seconds": sum(s), "mean_seconds": sum(s) / len(s), "max_seconds": max(s),
                       "cpu_seconds": r["cpu_seconds"], "max_rss_mb": r["max_rss_mb"]}
    serial = sum(v["total_seconds"] for v in rules.values())
    startup = {step: startup_seconds(step) for step in sorted({step_of(r) for r in rules})}
    for rule, v in rules.items():
        v["startup_seconds"] = startup[step_of(rule)] * v["jobs"]
    startup_total = sum(v["startup_seconds"] for v in rules.values())
    print(f"{'rule':28s} {'jobs':>5s} {'total s':>9s} {'mean s':>8s} {'max s':>8s} {'cpu s':>9s} {'rss MB':>8s} "
          f"{'start-up s':>10s}")
    for rule, v in rules.items():
        print(f"{rule[:28]:28s} {v['jobs']:>5d} {v['total_seconds']:>9.1f} {v['mean_seconds']:>8.2f} "
              f"{v['max_seconds']:>8.1f} {v['cpu_seconds']:>9.1f} {v['max_rss_mb']:>8.0f} {v['startup_seconds']:>10.1f}")
    jobs = sum(v["jobs"] for v in rules.values())
    print(f"{jobs} jobs with benchmark files; serial sum {serial:.1f} s"
          + (f"; wall time {wall:.1f} s ({serial / wall:.2f} jobs in parallel on average)" if wall else "")
          + (f"; {len(missing)} benchmark files missing (jobs not run)" if missing else ""))
    print(f"start-up (imports per job: {', '.join(f'{k} {v:.2f} s' for k, v in startup.items())}): "
          f"{startup_total:.1f} s, {100 * startup_total / serial:.0f}% of job time; load average {load_average():.1f}")
    write_results(args.out, {"workdir": str(workdir), "launched": args.launch, "cores": args.cores,
                             "wall_seconds": wall, "serial_seconds": serial, "jobs": jobs, "rules": rules,
                             "startup_seconds_per_job": startup, "startup_seconds": startup_total,
                             "missing_benchmarks": missing})


if __name__ == "__main__":
    main()
