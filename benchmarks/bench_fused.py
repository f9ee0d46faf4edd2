"""Fused training vs the same runs one by one through the real trainer (MNIST-1D MLP, CPU).

For each group size N (default 3 and 6): N masked runs (90% sparse
magnitude masks of each run's own init, init seeds 0..N-1, data seeds
0..N-1, preset ``mnist1d_sparse``) are trained

- one by one: N calls of ``sparsebasin.training.fit`` (each writes its run
  directory: checkpoints, metrics, predictions, result, per-epoch resume);
- fused: one ``sparsebasin.fused.fit_fused`` call (engine ``auto`` = the
  batched-matmul MLP engine on CPU, and the generic ``grouped`` engine),

alternating in the same process, ``--rounds`` times. Wall time covers the
whole call (training, per-epoch evaluation, every file written). The last
round's final weights are compared (max abs difference, allclose at rtol
1e-4 / atol 1e-6).

``--cli`` adds the job-level comparison the workflow sees: N
``python -m sparsebasin train --init --mask`` processes vs one
``python -m sparsebasin fused`` process (interpreter and torch start-up
included).

    .venv/bin/python benchmarks/bench_fused.py                 # N = 3, 6; 5 epochs; 3 rounds
    .venv/bin/python benchmarks/bench_fused.py --cli --rounds 2
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from _bench import REPO, alternate, load_average, ratio_summary, write_results

from sparsebasin import checkpoints
from sparsebasin.data import load_split
from sparsebasin.training.fused import GroupMember, fit_fused
from sparsebasin.models import prunable_keys
from sparsebasin.pruning import prune_to, sparsity_report
from sparsebasin.training import fit, resolve_config


def masks_for(models, sparsity):
    out = []
    for m in models:
        sd = m.state_dict()
        keys = prunable_keys(m)
        out.append(prune_to(sd, {k: torch.ones_like(sd[k], dtype=torch.bool) for k in keys}, sparsity))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=str(REPO / "data"), help="MNIST-1D cache root (generated if missing)")
    p.add_argument("--groups", default="3,6", help="group sizes N")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--width", type=int, default=1)
    p.add_argument("--hidden", type=int, default=None, help="MLP units per hidden layer at width 1 (default 128; "
                   "the built-in workflow config uses 32)")
    p.add_argument("--sparsity", type=float, default=0.9)
    p.add_argument("--threads", type=int, default=1, help="torch threads for both sides (default 1: per-core rate)")
    p.add_argument("--engines", default="auto,grouped")
    p.add_argument("--cli", action="store_true", help="also time N train processes vs one fused process")
    p.add_argument("--out", default="fused")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    train = load_split("mnist1d", args.data_dir, "train")
    test = load_split("mnist1d", args.data_dir, "test")
    meta = checkpoints.data_meta(train.info)
    model_cfg = {"name": "mlp", "width": args.width}
    if args.hidden is not None:
        model_cfg["hidden"] = args.hidden
    cfg = resolve_config("mnist1d_sparse", epochs=args.epochs)
    engines = [e for e in args.engines.split(",") if e]
    tmp = Path(tempfile.mkdtemp(prefix="bench_fused_"))
    results = {"config": {"model": model_cfg, "train": cfg.to_dict(), "n_train": len(train), "n_test": len(test),
                          "sparsity": args.sparsity, "threads": args.threads, "rounds": args.rounds},
               "groups": {}}
    print(f"MNIST-1D MLP w{args.width} hidden {model_cfg.get('hidden', 128)}: {len(train)} train / {len(test)} test, "
          f"{args.epochs} epochs, "
          f"batch {cfg.batch_size}, sparsity {args.sparsity}, {args.threads} thread(s), load {load_average():.1f}")
    try:
        for n in [int(x) for x in args.groups.split(",")]:
            def build(s):
                torch.manual_seed(s)
                return checkpoints.build_from_meta(model_cfg, meta)

            masks = masks_for([build(s) for s in range(n)], args.sparsity)

            def separate():
                shutil.rmtree(tmp / "sep", ignore_errors=True)
                for s in range(n):
                    fit(build(s), train, test, cfg, out_dir=tmp / "sep" / f"r{s}", mask=masks[s], data_seed=s,
                        model_cfg=model_cfg, data_meta=meta, run_name=f"r{s}", device="cpu", progress="log",
                        init_seed=s)

            def fused(engine):
                def go():
                    shutil.rmtree(tmp / engine, ignore_errors=True)
                    members = [GroupMember(model=build(s), out_dir=tmp / engine / f"r{s}", run_name=f"r{s}",
                                           data_seed=s, mask=masks[s], init_seed=s) for s in range(n)]
                    fit_fused(members, train, test, cfg, model_cfg=model_cfg, data_meta=meta, device="cpu",
                              progress="log", engine=engine)
                return go

            cands = {"separate": separate, **{f"fused_{e}": fused(e) for e in engines}}
            times = alternate(cands, args.rounds, label=f"N={n} ")
            images = n * args.epochs * len(train)
            entry = {"runs": n, "images": images, "seconds": times, "images_per_s": {
                k: images / (sum(v) / len(v)) for k, v in times.items()}}
            for e in engines:
                entry[f"fused_{e}"] = ratio_summary(times, "separate", f"fused_{e}")
                diffs, close = [], []
                for s in range(n):
                    a = checkpoints.load_checkpoint(tmp / "sep" / f"r{s}" / "final.pt")["state_dict"]
                    b = checkpoints.load_checkpoint(tmp / e / f"r{s}" / "final.pt")["state_dict"]
                    diffs.append(max((a[k] - b[k]).abs().max().item() for k in a))
                    close.append(all(torch.allclose(a[k], b[k], rtol=1e-4, atol=1e-6) for k in a))
                entry[f"fused_{e}"]["max_abs_weight_diff"] = max(diffs)
                entry[f"fused_{e}"]["allclose_rtol1e-4_atol1e-6"] = close
                print(f"N={n} fused ({e} engine) vs one by one: {entry[f'fused_{e}']['speedup']:.2f}x "
                      f"(medians {entry[f'fused_{e}']['baseline_seconds_median']:.2f} s -> "
                      f"{entry[f'fused_{e}']['candidate_seconds_median']:.2f} s; "
                      f"{entry['images_per_s']['separate']:.0f} -> {entry['images_per_s'][f'fused_{e}']:.0f} img/s; "
                      f"max |dw| {max(diffs):.1e}, allclose {sum(close)}/{n})")
            if args.cli:
                entry["cli"] = cli_compare(tmp, n, masks, build, model_cfg, meta, cfg, args)
            results["groups"][str(n)] = entry
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    write_results(args.out, results)


def cli_compare(tmp: Path, n: int, masks, build, model_cfg, meta, cfg, args) -> dict:
    """N ``train`` processes vs one ``fused`` process on the same inits, masks and data seeds."""
    inputs = tmp / "inputs"
    for s in range(n):
        m = build(s)
        checkpoints.save_checkpoint(inputs / f"init{s}.pt", m, model_cfg, meta, 0)
        checkpoints.save_mask(inputs / f"mask{s}.pt", masks[s], model_cfg, meta, sparsity_report(m, masks[s], args.sparsity))
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    common = ["--dataset", "mnist1d", "--data-dir", args.data_dir, "--preset", "mnist1d_sparse",
              "--epochs", str(args.epochs), "--device", "cpu", "--threads", str(args.threads), "--progress", "log"]
    py = [sys.executable, "-m", "sparsebasin"]

    def separate():
        shutil.rmtree(tmp / "cli_sep", ignore_errors=True)
        for s in range(n):
            model_args = ["--model", "mlp", "--width", str(args.width)]
            if args.hidden is not None:
                model_args += ["--hidden", str(args.hidden)]
            subprocess.run(py + ["train", *model_args, "--init",
                                 str(inputs / f"init{s}.pt"), "--mask", str(inputs / f"mask{s}.pt"),
                                 "--data-seed", str(s), "--out-dir", str(tmp / "cli_sep" / f"r{s}"), *common],
                           check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def fused():
        shutil.rmtree(tmp / "cli_fused", ignore_errors=True)
        runs = []
        for s in range(n):
            runs += ["--run", f"out_dir={tmp / 'cli_fused' / f'r{s}'},init={inputs / f'init{s}.pt'},"
                              f"mask={inputs / f'mask{s}.pt'},data_seed={s}"]
        subprocess.run(py + ["fused", *runs, *common], check=True, env=env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)

    times = alternate({"separate_processes": separate, "fused_process": fused}, args.rounds, label=f"N={n} cli ")
    out = {"seconds": times, **ratio_summary(times, "separate_processes", "fused_process")}
    print(f"N={n} one fused process vs {n} train processes: {out['speedup']:.2f}x "
          f"({out['baseline_seconds_median']:.2f} s -> {out['candidate_seconds_median']:.2f} s)")
    return out


if __name__ == "__main__":
    main()
