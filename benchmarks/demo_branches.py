"""Demonstration on MNIST-1D: permuted masks beat naive ones at high sparsity.

For each seed s: train dense MLPs A (init seed 2s) and B (init seed 2s+1),
IMP-FT on A to the target sparsities (one chain), activation-match A to B,
permute A's masks, then train the three sparse branches from rewind point k:

    lth      = w_A(k) * m_A
    naive    = w_B(k) * m_A
    permuted = w_B(k) * pi(m_A)

and print test accuracy per (sparsity, branch, seed), plus mean +- std.
Everything goes through the library calls the step CLIs use (train_run,
run_imp, activation_matching, permute_state, run_sparse). Finished runs are
reused on a rerun (delete --work-dir to start over).

    .venv/bin/python benchmarks/demo_branches.py            # ~5-10 min on one CPU core
    .venv/bin/python benchmarks/demo_branches.py --seeds 0,1,2 --width 4

Measured (defaults: width 2, k=2, presets mnist1d_dense 30 ep lr .3 / mnist1d_imp_ft
10 ep per round lr .1 plain SGD / mnist1d_sparse 28 ep lr .2; 7.7 min on one shared
CPU core), test accuracy seed 0 / seed 1:

    S=0.90  lth .9232/.9272  naive .8504/.8632  permuted .9042/.9094
    S=0.97  lth .8550/.8526  naive .4732/.5830  permuted .7998/.7958
    dense A .9294/.9314; mean matched correlation .634/.623 (identity .012/.022)
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from sparsebasin import checkpoints, io
from sparsebasin.data import batches, load_split
from sparsebasin.options import DataOptions, RunOptions
from sparsebasin.pruning import fmt_sparsity, sparsity_report
from sparsebasin.pruning.imp import IMPOptions, run_imp
from sparsebasin.symmetry import permutation_spec, permute_state
from sparsebasin.symmetry.matching import activation_matching
from sparsebasin.training import resolve_config, run_sparse, train_run

BRANCHES = ("lth", "naive", "permuted")
CPU = RunOptions(device="cpu", progress="log")
HERE = Path(__file__).resolve().parent


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=str(HERE.parent / "data"))
    p.add_argument("--work-dir", default="/tmp/sparsebasin_demo_branches", help="runs (reused on rerun)")
    p.add_argument("--out", default=str(HERE / "results" / "demo_branches"), help="prefix of the .csv/.md table")
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--width", type=int, default=2, help="MLP width multiplier (x128 units per hidden layer)")
    p.add_argument("--epochs", type=int, default=None, help="T: dense epochs (default: mnist1d_dense's); sparse runs train T - k")
    p.add_argument("--k", type=int, default=2, help="rewind epoch")
    p.add_argument("--targets", default="0.9,0.97")
    p.add_argument("--rate", type=float, default=0.2)
    p.add_argument("--ft-epochs", type=int, default=None, help="IMP fine-tuning epochs per round (default: mnist1d_imp_ft's)")
    p.add_argument("--threads", type=int, default=1)
    return p.parse_args()


def train_dense(d: Path, args, cfg, seed: int) -> None:
    if (d / "result.json").exists():
        return
    train_run(model_cfg={"name": "mlp", "width": args.width}, data=DataOptions("mnist1d", args.data_dir),
              cfg=cfg, seed=seed, data_seed=seed, out_dir=d, save_epochs=(0, args.k), run_name=d.name, run=CPU)


def main() -> int:
    args = parse()
    torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    targets = [float(t) for t in args.targets.split(",")]
    dense_cfg = resolve_config("mnist1d_dense", epochs=args.epochs)
    sparse_cfg = resolve_config("mnist1d_sparse", epochs=dense_cfg.epochs - args.k)
    ft_cfg = resolve_config("mnist1d_imp_ft", epochs=args.ft_epochs)
    # runs are reused only under identical settings: one work directory per settings
    key = json.dumps([dense_cfg.to_dict(), sparse_cfg.to_dict(), ft_cfg.to_dict(), args.width, args.k, targets,
                      args.rate], sort_keys=True)
    work = Path(args.work_dir) / f"w{args.width}-k{args.k}-{hashlib.sha256(key.encode()).hexdigest()[:10]}"
    t0 = time.perf_counter()
    rows, extra = [], []
    train_ds = load_split("mnist1d", args.data_dir, "train")
    for s in seeds:
        d = work / f"seed{s}"
        train_dense(d / "A", args, dense_cfg, 2 * s)
        train_dense(d / "B", args, dense_cfg, 2 * s + 1)
        imp = run_imp(checkpoint=d / "A" / "final.pt", targets=targets, out_dir=d / "prune",
                      data=DataOptions("mnist1d", args.data_dir), ft_cfg=ft_cfg, imp=IMPOptions(rate=args.rate),
                      seed=2 * s, run=CPU)
        ck_a, ck_b = (checkpoints.load_checkpoint(d / x / "final.pt") for x in "AB")
        model_a, model_b = checkpoints.model_from_checkpoint(ck_a), checkpoints.model_from_checkpoint(ck_b)
        spec = permutation_spec(model_a)
        perm, meta = activation_matching(model_a, model_b, spec,
                                         batches(train_ds, 1000, shuffle=False, device="cpu"))
        dense_acc = {x: io.read_json(d / x / "result.json")["test_acc"] for x in "AB"}
        extra.append({"seed": s, "dense_A": dense_acc["A"], "dense_B": dense_acc["B"],
                      "corr_identity": meta["mean_correlation_identity"], "corr_matched": meta["mean_correlation"],
                      **{f"imp_{k}": io.read_json(d / "prune" / f"S{k}" / "result.json")["test_acc"]
                         for k in imp["targets"]}})
        for t in targets:
            tdir = d / "prune" / f"S{fmt_sparsity(t)}"
            m_a = checkpoints.load_mask(tdir / "mask.pt")
            pm = permute_state(spec, perm, m_a["mask"], source=str(tdir / "mask.pt"))
            checkpoints.save_mask(tdir / "mask_permuted.pt", pm, m_a["model"], m_a["data"],
                                  sparsity_report(model_a, pm, t), m_a["provenance"])
            for branch, init, mask in (("lth", "A", "mask.pt"), ("naive", "B", "mask.pt"),
                                       ("permuted", "B", "mask_permuted.pt")):
                out = d / "sparse" / f"S{fmt_sparsity(t)}" / f"k{args.k}" / branch
                if not (out / "result.json").exists():
                    run_sparse(init=d / init / "ckpt" / f"epoch{args.k}.pt", mask=tdir / mask, branch=branch,
                               cfg=sparse_cfg, data=DataOptions("mnist1d", args.data_dir), out_dir=out, seed=2 * s,
                               run=RunOptions(device="cpu", progress="log", tags={"seed": str(s)}))
                res = io.read_json(out / "result.json")
                rows.append({"seed": s, "sparsity": fmt_sparsity(t), "k": args.k, "branch": branch,
                             "test_acc": res["test_acc"], "test_loss": res["test_loss"]})

    minutes = (time.perf_counter() - t0) / 60
    def hp(c):
        return f"{c.epochs} ep, lr {c.lr:g}, mom {c.momentum:g}, wd {c.weight_decay:g}, batch {c.batch_size}"

    lines = [f"# MNIST-1D MLP (width {args.width}: 2 x {128 * args.width} units), k={args.k}, seeds {seeds}", "",
             f"dense: {hp(dense_cfg)}; IMP-FT: rate {args.rate}, per round {hp(ft_cfg)}; "
             f"sparse: {hp(sparse_cfg)} (fresh cosine); {minutes:.1f} min on {args.threads} CPU thread(s)", ""]
    lines += ["| seed | dense A | dense B | corr identity | corr matched | "
              + " | ".join(f"IMP S={fmt_sparsity(t)}" for t in targets) + " |",
              "|---" * (5 + len(targets)) + "|"]
    for e in extra:
        lines.append(f"| {e['seed']} | {e['dense_A']:.4f} | {e['dense_B']:.4f} | {e['corr_identity']:.3f} | "
                     f"{e['corr_matched']:.3f} | " + " | ".join(f"{e['imp_' + fmt_sparsity(t)]:.4f}" for t in targets) + " |")
    lines += ["", "| sparsity | branch | " + " | ".join(f"seed {s}" for s in seeds) + " | mean | std |",
              "|---" * (4 + len(seeds)) + "|"]
    for t in targets:
        for b in BRANCHES:
            accs = [r["test_acc"] for r in rows if r["sparsity"] == fmt_sparsity(t) and r["branch"] == b]
            sd = statistics.stdev(accs) if len(accs) > 1 else float("nan")
            lines.append(f"| {fmt_sparsity(t)} | {b} | " + " | ".join(f"{a:.4f}" for a in accs)
                         + f" | {statistics.mean(accs):.4f} | {sd:.4f} |")
    top = fmt_sparsity(max(targets))
    wins = [s for s in seeds
            if next(r for r in rows if r["seed"] == s and r["sparsity"] == top and r["branch"] == "permuted")["test_acc"]
            > next(r for r in rows if r["seed"] == s and r["sparsity"] == top and r["branch"] == "naive")["test_acc"]]
    lines += ["", f"permuted > naive at S={top}: {len(wins)}/{len(seeds)} seeds"]
    text = "\n".join(lines) + "\n"
    print(text)
    io.write_text(args.out + ".md", text)
    with io.atomic_path(args.out + ".csv") as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return 0 if len(wins) == len(seeds) else 1


if __name__ == "__main__":
    sys.exit(main())
