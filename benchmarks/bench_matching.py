"""Time activation matching of two ResNet20xw (random weights) on CIFAR-shaped data, and weight matching
(Git Re-Basin: no data) of the same pair beside it, with the ratio.

Default: widths 1, 2, 4, 8, 16; 10,000 random 32x32 RGB images streamed as 20
batches of 500 (no augmentation, fixed order), correlation statistic, on CPU.
Prints seconds per width and writes ``benchmarks/results/matching.json``
(per width: total wall seconds, statistics vs assignment seconds, CPU seconds,
batches, threads, the 1-minute load average before/after, provenance). On a
shared machine wall time grows with other jobs' load; CPU seconds divided by
the thread count approximate the wall time on an idle machine.

``--max-batches N`` measures only the first N batches of each width, and
``--budget-seconds S`` stops a width once S seconds have passed (after at least
one batch); the statistics time is then extrapolated linearly to the full run
(the per-batch cost is constant: same shapes every batch) and the JSON marks
such widths ``extrapolated: true`` with the measured numbers alongside.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_matching.py --threads 2 --chunk 100 --budget-seconds 300
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

from sparsebasin import provenance
from sparsebasin import device as devices
from sparsebasin.data import batches, dataset_info
from sparsebasin.data.base import ArrayDataset
from sparsebasin.io import write_json
from sparsebasin.models import build_model
from sparsebasin.symmetry import permutation_spec
from sparsebasin.symmetry.matching import activation_statistics, solve_assignment, weight_matching

OUT = Path(__file__).resolve().parent / "results" / "matching.json"


def _within_budget(it, budget: float | None):
    """Yield from ``it`` until ``budget`` seconds have passed (always at least one item)."""
    t0 = time.perf_counter()
    for i, item in enumerate(it):
        if i > 0 and budget is not None and time.perf_counter() - t0 > budget:
            return
        yield item


def bench_width(width: int, ds, batch_size: int, n_batches: int, max_batches: int | None, device, chunk,
                budget: float | None = None) -> dict:
    torch.manual_seed(width)
    a = devices.prepare_model(build_model({"name": "resnet20", "width": width}, 10, 3), device)
    b = devices.prepare_model(build_model({"name": "resnet20", "width": width}, 10, 3), device)
    spec = permutation_spec(a)
    measured = n_batches if max_batches is None else min(max_batches, n_batches)
    load_before = os.getloadavg()[0]
    c0 = time.process_time()
    t0 = time.perf_counter()
    stats, used, _ = activation_statistics(
        a, b, spec, _within_budget(batches(ds, batch_size, shuffle=False, augment=False, device=device), budget),
        device, measured, chunk,
    )
    if device.type == "cuda":
        torch.cuda.synchronize()
    t1 = time.perf_counter()
    c1 = time.process_time()
    for st in stats.values():
        solve_assignment(st.correlation())
    t2 = time.perf_counter()
    stat_s = (t1 - t0) * n_batches / used
    w0 = time.perf_counter()
    _, wmeta = weight_matching(spec, a.state_dict(), b.state_dict(), seed=0)
    weight_s = time.perf_counter() - w0
    return {
        "seconds_weight_matching": weight_s,
        "weight_matching_passes": wmeta.get("passes"),
        "width": width,
        "seconds": stat_s + (t2 - t1),
        "seconds_statistics": stat_s,
        "seconds_assignment": t2 - t1,
        "batches": n_batches,
        "batch_size": batch_size,
        "measured_batches": used,
        "measured_seconds_statistics": t1 - t0,
        "extrapolated": used < n_batches,
        # CPU seconds of this process (all threads), extrapolated likewise: less sensitive to other jobs
        "cpu_seconds_statistics": (c1 - c0) * n_batches / used,
        "load_average_1min": [load_before, os.getloadavg()[0]],  # before / after: the CPU is shared
        "groups": len(spec.sizes),
        "largest_group": max(spec.sizes.values()),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--widths", default="1,2,4,8,16")
    p.add_argument("--images", type=int, default=10_000)
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--max-batches", type=int, default=None, help="measure at most N batches per width, extrapolate")
    p.add_argument("--budget-seconds", type=float, default=None, help="stop a width after this long, extrapolate")
    p.add_argument("--chunk", type=int, default=None, help="forward at most this many images at a time")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default=str(OUT))
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = devices.resolve(args.device)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (args.images, 3, 32, 32), generator=g, dtype=torch.uint8)
    ds = ArrayDataset(dataset_info("cifar10"), x, torch.randint(0, 10, (args.images,), generator=g))
    n_batches = -(-args.images // args.batch_size)
    results = []
    for w in [int(t) for t in args.widths.split(",")]:
        r = bench_width(w, ds, args.batch_size, n_batches, args.max_batches, device, args.chunk, args.budget_seconds)
        results.append(r)
        note = f" (extrapolated from {r['measured_batches']} batches)" if r["extrapolated"] else ""
        print(f"resnet20x{w}: activation {r['seconds']:.1f} s  [statistics {r['seconds_statistics']:.1f} s, "
              f"assignment {r['seconds_assignment']:.2f} s; CPU {r['cpu_seconds_statistics']:.1f} s; "
              f"load {r['load_average_1min'][0]:.1f}]{note}; weight {r['seconds_weight_matching']:.2f} s "
              f"({r['weight_matching_passes']} passes): activation/weight = "
              f"{r['seconds'] / max(r['seconds_weight_matching'], 1e-9):.1f}x", flush=True)
        write_json(args.out, {
            "benchmark": "activation vs weight matching, ResNet20xw, random weights, CIFAR-shaped random images",
            "images": args.images, "device": str(device), "threads": torch.get_num_threads(),
            "cpus": os.cpu_count(),
            "results": results,
            "provenance": provenance.collect(config=vars(args), device=device),
        })
    return 0


if __name__ == "__main__":
    sys.exit(main())
