"""Training cost of each paper config: the epochs our DAG schedules vs the published code's protocol.

For every config (default: ``config/*.yaml`` and the built-in ``config.yaml``):

1. **DAG (scheduled)**: ``snakemake -n -p`` of the config in an empty
   directory (so nothing counts as done), and every training command it
   would run is read: ``train``/``sparse`` = ``--epochs``; ``fused`` =
   ``--epochs`` x its ``--run`` count; ``prune`` = rounds x ``--ft-epochs``
   with the rounds from ``sparsebasin.pruning.imp_schedule(--targets,
   --rate, --chain)`` (the function the prune step itself runs). Unit: one
   run's epoch over the training set ("model-epochs"), per dataset, model
   and width. Evaluation-only passes (matching, interpolation, BN reset) are
   not training and are left out.
2. **Sweep, ours vs published**: for each cell's ``sweep`` grid (the part
   the published code covers), computed from the config by the workflow's
   rules: ours = dense A and B once per (width, seed) [2T], one chained IMP
   per (width, seed) [``imp_schedule(targets, chain=True)``], and
   ``3 x (T - k)`` per (sparsity, k); published = dense A and B retrained
   for every sparsity [2T x |S|], one separate IMP run per sparsity
   [``imp_schedule([S], chain=False)`` each], the same sparse runs. The
   ratio is published / ours.
3. **GPU-hours**: images = epochs x training-set size; images/s per (model,
   width) from ``benchmarks/results/throughput.json`` when it was measured on
   CUDA (by ``gpu_check.py``: ResNet20 x1/x4/x16 and VGG11; or by
   ``bench_throughput.py``), else the model ``min(cap, TFLOPS_eff / (3 x
   forward FLOPs per image))`` with forward FLOPs counted by
   ``torch.utils.flop_counter`` on each architecture. Assumptions (flags):
   ``--gpu-tflops 60`` effective bf16 TFLOPS of an A100 on convnets (about a
   fifth of its 312 peak) and ``--gpu-max-images-per-s 30000`` (a small
   model's per-step overhead bound on an A100 at batch 128). Estimates only.

    .venv/bin/python benchmarks/bench_grid_cost.py
    .venv/bin/python benchmarks/bench_grid_cost.py --configs config/cifar10_resnet20.yaml --gpu-tflops 40
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import yaml

from _bench import REPO, RESULTS, write_results

from sparsebasin.pruning import imp_schedule

# Training-set sizes (examples per epoch) of the datasets the configs use.
N_TRAIN = {"mnist1d": 20_000, "cifar10": 50_000, "cifar100": 50_000, "svhn": 73_257, "imagenet": 1_281_167}
CLASSES = {"mnist1d": 10, "cifar10": 10, "cifar100": 100, "svhn": 10, "imagenet": 1000}


# ------------------------------------------------------------------ DAG --

def dry_run_commands(configfile: Path | None, snakemake: str) -> tuple[list[str], float]:
    """Every shell command of a full dry run (empty working directory); and the dry-run seconds."""
    with tempfile.TemporaryDirectory(prefix="grid_cost_") as tmp:
        cmd = [snakemake, "-s", str(REPO / "Snakefile"), "-d", tmp, "-n", "-p", "--cores", "1"]
        if configfile is not None:
            cmd += ["--configfile", str(configfile)]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"dry run of {configfile or 'config.yaml'} failed:\n{proc.stderr[-2000:]}{proc.stdout[-2000:]}")
    out = proc.stdout + proc.stderr
    return [line.split("Shell command:", 1)[1].strip() for line in out.splitlines() if "Shell command:" in line], seconds


def _opts(argv: list[str]) -> tuple[dict, list[str], dict]:
    """Last value of each --option, the --run values, and the --tag K=V pairs."""
    opts, runs, tags = {}, [], {}
    i = 0
    while i < len(argv):
        a = argv[i]
        if a.startswith("--"):
            val = argv[i + 1] if i + 1 < len(argv) and not argv[i + 1].startswith("--") else True
            if a == "--run":
                runs.append(val)
            elif a == "--tag" and isinstance(val, str) and "=" in val:
                k, v = val.split("=", 1)
                tags[k] = v
            else:
                opts[a[2:]] = val
            i += 2 if val is not True else 1
        else:
            i += 1
    return opts, runs, tags


def training_epochs(command: str) -> list[dict]:
    """The training a shell command does: [{step, dataset, model, width, epochs}] (empty if none)."""
    text = command.split(" > ", 1)[0]
    try:
        argv = shlex.split(text)
    except ValueError:
        return []
    if "sparsebasin" not in argv:
        return []
    step = argv[argv.index("sparsebasin") + 1]
    if step not in ("train", "sparse", "fused", "prune"):
        return []
    opts, runs, tags = _opts(argv)
    dataset = opts.get("dataset")
    if step == "prune":
        targets = [float(t) for t in str(opts["targets"]).split(",")]
        rounds = imp_schedule(targets, float(opts.get("rate", 0.2)), chain="no-chain" not in opts)
        epochs = len(rounds) * int(opts["ft-epochs"])
        return [{"step": step, "dataset": dataset, "model": tags.get("model"), "width": int(tags.get("width", 1)),
                 "epochs": epochs, "runs": 1}]
    epochs = int(opts["epochs"])
    if step == "fused":
        out = []
        for r in runs:
            kv = dict(p.split("=", 1) for p in r.split(",") if "=" in p)
            out.append({"step": step, "dataset": dataset, "model": kv.get("tag.model", opts.get("model")),
                        "width": int(kv.get("tag.width", opts.get("width", 1))), "epochs": epochs, "runs": 1})
        return out
    return [{"step": step, "dataset": dataset, "model": opts.get("model", tags.get("model")),
             "width": int(opts.get("width", tags.get("width", 1))), "epochs": epochs, "runs": 1}]


# ---------------------------------------------------------------- sweep --

def sweep_epochs(cell: dict) -> dict | None:
    """Ours vs the published protocol for the cell's sweep grid; None without a sweep."""
    sweep = cell.get("sweep")
    if not sweep:
        return None
    T = int(cell["dense"]["epochs"])
    widths = sweep.get("widths", cell["widths"])
    seeds = sweep.get("seeds", cell["seeds"])
    S, ks = [float(s) for s in sweep["sparsities"]], [int(k) for k in sweep["rewind"]]
    rate, ft = float(cell["prune"]["rate"]), int(cell["prune"]["ft_epochs"])
    sparse = sum(3 * (T - k) for _ in S for k in ks)
    ours = {"dense": 2 * T, "imp": len(imp_schedule(S, rate, chain=True)) * ft, "sparse": sparse}
    published = {"dense": 2 * T * len(S), "imp": sum(len(imp_schedule([s], rate, chain=False)) for s in S) * ft,
                 "sparse": sparse}
    n = len(widths) * len(seeds)
    out = {"widths": widths, "seeds": seeds, "per_width_seed": {"ours": ours, "published": published}}
    for name, d in (("ours", ours), ("published", published)):
        out[name] = {k: v * n for k, v in d.items()}
        out[name]["total"] = sum(d.values()) * n
        out[name]["by_width"] = {w: sum(d.values()) * len(seeds) for w in widths}
    out["ratio"] = out["published"]["total"] / out["ours"]["total"]
    return out


# ------------------------------------------------------------- GPU-hours --

_FLOPS: dict = {}


def forward_flops(dataset: str, model: str, width: int, model_args: dict | None = None) -> float:
    """Forward FLOPs per image of the architecture (counted on the meta device)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from sparsebasin.data import dataset_info
    from sparsebasin.models import build_model

    key = (dataset, model, width, json.dumps(model_args or {}, sort_keys=True))
    if key not in _FLOPS:
        info = dataset_info(dataset)
        m = build_model({"name": model, "width": width, **(model_args or {})}, info.num_classes, info.in_channels,
                        input_size=info.input_size).to("meta")
        x = torch.empty((1, *info.input_shape), device="meta")
        with FlopCounterMode(display=False) as counter:
            m(x)
        _FLOPS[key] = float(counter.get_total_flops())
    return _FLOPS[key]


def rate_model(args, measured: dict):
    def rate(dataset: str, model: str, width: int, model_args=None) -> tuple[float, str]:
        if (model, str(width)) in measured:
            return measured[(model, str(width))], "measured (throughput.json, CUDA)"
        f = forward_flops(dataset, model, width, model_args)
        r = min(args.gpu_max_images_per_s, args.gpu_tflops * 1e12 / (3 * f))
        return r, f"model: min({args.gpu_max_images_per_s:.0f}, {args.gpu_tflops:g} TFLOPS / (3 x {f / 1e9:.3g} GFLOP))"
    return rate


def measured_rates(path: Path) -> dict:
    """The workflow's own reading of throughput.json (sparsebasin.plan.resources), {} when there is none."""
    from sparsebasin.plan.resources import load_throughput

    return load_throughput(path) if path.exists() else {}


# ----------------------------------------------------------------- main --

def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", nargs="*", default=None,
                   help="config files (default: config/*.yaml, then the built-in config.yaml)")
    p.add_argument("--gpu-tflops", type=float, default=60.0, help="assumed effective bf16 TFLOPS (A100)")
    p.add_argument("--gpu-max-images-per-s", type=float, default=30000.0,
                   help="assumed overhead bound on images/s of a small model (A100, batch 128)")
    p.add_argument("--throughput-json", default=str(RESULTS / "throughput.json"),
                   help="bench_throughput results; used when measured on CUDA")
    p.add_argument("--snakemake", default=str(Path(sys.executable).parent / "snakemake"))
    p.add_argument("--out", default="grid_cost")
    args = p.parse_args()
    configs = [Path(c) for c in args.configs] if args.configs else sorted((REPO / "config").glob("*.yaml")) + [None]
    rate = rate_model(args, measured_rates(Path(args.throughput_json)))

    report = {"assumptions": {"gpu_tflops_effective": args.gpu_tflops,
                              "gpu_max_images_per_s": args.gpu_max_images_per_s,
                              "throughput_json": args.throughput_json, "n_train": N_TRAIN},
              "configs": {}}
    for cfg_path in configs:
        name = cfg_path.stem if cfg_path is not None else "config (built-in default)"
        cfg = yaml.safe_load((cfg_path or REPO / "config.yaml").read_text(encoding="utf-8"))
        commands, dry_seconds = dry_run_commands(cfg_path, args.snakemake)
        by_key: dict = defaultdict(lambda: {"epochs": 0, "runs": 0})
        by_step: dict = defaultdict(int)
        for c in commands:
            for t in training_epochs(c):
                k = (t["dataset"], t["model"], t["width"])
                by_key[k]["epochs"] += t["epochs"]
                by_key[k]["runs"] += t["runs"]
                by_step[t["step"]] += t["epochs"]
        model_args = {}
        for exp in cfg.get("experiments", {}).values():
            for cell in exp["cells"]:
                model_args[(cell["dataset"], cell["model"])] = cell.get("model_args") or {}
        dag_hours, rows = 0.0, []
        for (ds, model, w), v in sorted(by_key.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2])):
            r, src = rate(ds, model, w, model_args.get((ds, model)))
            hours = v["epochs"] * N_TRAIN[ds] / r / 3600
            dag_hours += hours
            rows.append({"dataset": ds, "model": model, "width": w, "epochs": v["epochs"], "runs": v["runs"],
                         "images_per_s": r, "rate_source": src, "gpu_hours": hours})
        sweeps = []
        for exp_name, exp in cfg.get("experiments", {}).items():
            for i, cell in enumerate(exp["cells"]):
                sw = sweep_epochs(cell)
                if sw is None:
                    continue
                hours = {}
                for side in ("ours", "published"):
                    hours[side] = sum(
                        e * N_TRAIN[cell["dataset"]] / rate(cell["dataset"], cell["model"], int(w),
                                                           cell.get("model_args"))[0] / 3600
                        for w, e in sw[side]["by_width"].items())
                sw["gpu_hours"] = hours
                sweeps.append({"experiment": exp_name, "cell": i, "dataset": cell["dataset"],
                               "model": cell["model"], **sw})
        entry = {"dry_run_seconds": dry_seconds, "dag": {"by_step_epochs": dict(by_step), "rows": rows,
                                                         "total_epochs": sum(by_step.values()),
                                                         "gpu_hours": dag_hours},
                 "sweeps": sweeps}
        if sweeps:
            ours = sum(s["ours"]["total"] for s in sweeps)
            pub = sum(s["published"]["total"] for s in sweeps)
            entry["sweep_total"] = {"ours_epochs": ours, "published_epochs": pub, "ratio": pub / ours,
                                    "ours_gpu_hours": sum(s["gpu_hours"]["ours"] for s in sweeps),
                                    "published_gpu_hours": sum(s["gpu_hours"]["published"] for s in sweeps)}
        report["configs"][name] = entry
        print_entry(name, entry)
    write_results(args.out, report)


def print_entry(name: str, e: dict) -> None:
    d = e["dag"]
    steps = ", ".join(f"{k} {v:,}" for k, v in sorted(d["by_step_epochs"].items()))
    print(f"\n== {name}: DAG schedules {d['total_epochs']:,} model-epochs ({steps}); "
          f"~{d['gpu_hours']:,.0f} GPU-h (dry run {e['dry_run_seconds']:.1f} s)")
    for r in d["rows"]:
        print(f"   {r['dataset']:9s} {r['model']:9s} w{r['width']:<3d} {r['epochs']:>9,} epochs "
              f"{r['images_per_s']:>8,.0f} img/s  {r['gpu_hours']:>9,.1f} GPU-h")
    for s in e["sweeps"]:
        o, p = s["ours"], s["published"]
        print(f"   sweep {s['experiment']}[{s['cell']}] {s['dataset']} {s['model']} w{s['widths']}: ours {o['total']:,} "
              f"(dense {o['dense']:,}, IMP {o['imp']:,}, sparse {o['sparse']:,}) vs published {p['total']:,} "
              f"(dense {p['dense']:,}, IMP {p['imp']:,}, sparse {p['sparse']:,}) -> {s['ratio']:.2f}x; "
              f"GPU-h {s['gpu_hours']['ours']:,.0f} vs {s['gpu_hours']['published']:,.0f}")
    if "sweep_total" in e:
        t = e["sweep_total"]
        print(f"   sweep total: ours {t['ours_epochs']:,} vs published {t['published_epochs']:,} epochs -> "
              f"{t['ratio']:.2f}x ({t['ours_gpu_hours']:,.0f} vs {t['published_gpu_hours']:,.0f} GPU-h)")


if __name__ == "__main__":
    main()
