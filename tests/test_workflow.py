"""The Snakemake workflow, without running any step: lint, dry-run job counts of
every config against the grid computed here from the config, partial targets.

Dry runs use `--directory <tmp>` so they never touch the repository's results/
and never collide with each other; no Slurm is needed (nothing is submitted).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from snakemake_output import job_stats

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
CONFIGS = sorted((REPO / "config").glob("*.yaml"))
BRANCHES = ("lth", "naive", "permuted")
GROUPS = ("dense", "imp", "lth", "naive", "permuted")
DOWNLOADABLE = ("cifar10", "cifar100", "svhn")


def snakemake(args, workdir, timeout=300):
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    cmd = [str(VENV_BIN / "snakemake"), "-s", str(REPO / "Snakefile"), "--directory", str(workdir), *args]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def dry_run(workdir, *args):
    """Dry run; args are targets and options (`--configfile=X`: options taking lists need `=`)."""
    res = snakemake([*args, "-n", "--quiet=rules"], workdir)
    assert res.returncode == 0, res.stdout + res.stderr
    return job_stats(res.stdout + res.stderr)


# --------------------------------------------------------------------------- the grid, independently


def _fmt(s):
    return f"{float(s):g}"


def _imp_lineage(targets, rate, target):
    """Round numbers from the first IMP round to the one landing on target (the library's own schedule)."""
    from sparsebasin.pruning import imp_schedule, lineage

    sched = imp_schedule(targets, rate, chain=True)
    branch = next(r for r in sched if r.kind == "branch" and r.target == target)
    return lineage(sched, branch.round)


def expected_jobs(config: dict) -> dict[str, int]:
    """Jobs per rule for a whole config, from the study definitions (docs/workflow.md)."""
    counts: dict[str, int] = {}
    fused = bool(config.get("fused", False))

    def add(rule, n):
        if n:
            counts[rule] = counts.get(rule, 0) + n

    datasets = set()
    for exp, e in config["experiments"].items():
        flags = {"sweep": False, "lmc": False, "imp_barrier": False, "plane": False, "diversity": False,
                 "early_matching": False, "matches": False}
        sparsities, top5 = set(), "test_top5" in e.get("metrics", ["test_acc"])
        for i, c in enumerate(e["cells"]):
            datasets.add(c["dataset"])
            T = c["dense"]["epochs"]
            widths, seeds = c["widths"], c["seeds"]

            def cover(sec):
                if sec is None:
                    return set()
                if "width" in sec:  # plane
                    return {(sec["width"], sec.get("seed", seeds[0]))}
                return {(w, s) for w in sec.get("widths", widths) for s in sec.get("seeds", seeds)}

            sweep, lmc, imp, plane = c.get("sweep"), c.get("lmc"), c.get("imp_barrier"), c.get("plane")
            div, early = c.get("diversity"), c.get("early_matching")
            for name in flags:
                if c.get(name):
                    flags[name] = True
            if sweep:
                sparsities.update(sweep["sparsities"])
            targets = set()
            for sec in (sweep, early):
                if sec:
                    targets.update(sec["sparsities"])
            for sec in (imp, plane, div):
                if sec:
                    targets.add(sec["sparsity"])

            need_b = cover(sweep) | cover(lmc) | cover(plane) | cover(div) | cover(early)
            need_a = need_b | cover(imp)
            if fused:
                for w in sorted({w for w, _ in need_a}):
                    add(f"dense_fused_{exp}_{i}_w{w}", 1)
            else:
                add("dense", len(need_a) + len(need_b))
            add(f"prune_{exp}_{i}", len(cover(sweep) | cover(imp) | cover(plane) | cover(div) | cover(early)))

            matched = cover(sweep) | cover(lmc) | cover(plane)
            permuted_masks, runs = set(), set()
            for w, s in cover(sweep):
                for S in sweep["sparsities"]:
                    permuted_masks.add((w, s, _fmt(S)))
                    for k in sweep["rewind"]:
                        runs.update((w, s, _fmt(S), k, b) for b in BRANCHES)
            for w, s in cover(plane):
                permuted_masks.add((w, s, _fmt(plane["sparsity"])))
                runs.update((w, s, _fmt(plane["sparsity"]), plane["k"], b) for b in ("lth", "permuted"))
            if div:
                members = div["seeds"] if "seeds" in div else seeds
                anchor, others = members[0], len(members) - 1
                for w in div.get("widths", widths):
                    matched.add((w, anchor))
                    permuted_masks.add((w, anchor, _fmt(div["sparsity"])))
                    runs.update((w, anchor, _fmt(div["sparsity"]), div["k"], b) for b in BRANCHES)
                    add("match_cross", others)
                    add("permute_mask_cross", others)
                    if not fused:
                        add("sparse_cross", 2 * others)
                        add("sparse_dataorder", others)
                    add("ensemble", len(GROUPS))
            if early:
                early_epochs = [x for x in early["epochs"] if x < T]
                for w, s in cover(early):
                    add("match_early", len(early_epochs))
                    add("permute_mask_early", len(early_epochs) * len(early["sparsities"]))
                    if not fused:
                        add("sparse_early", len(early_epochs) * len(early["sparsities"]))
                    for S in early["sparsities"]:
                        runs.update((w, s, _fmt(S), early["k"], b) for b in ("lth", "naive"))
                        if T in early["epochs"]:
                            matched.add((w, s))
                            permuted_masks.add((w, s, _fmt(S)))
                            runs.add((w, s, _fmt(S), early["k"], "permuted"))
            add("match", len(matched))
            if matched and (sweep or lmc or plane or div or (early and T in early["epochs"])):
                flags["matches"] = True
            add("permute_mask", len(permuted_masks))
            if fused:
                # one job per width and rewind point, for every sparse-like run there
                groups = {(w, k) for w, s, S, k, b in runs}
                if div:
                    groups.update((w, div["k"]) for w in div.get("widths", widths))
                if early:
                    groups.update((w, early["k"]) for w, s in cover(early))
                for w, k in sorted(groups):
                    add(f"sparse_fused_{exp}_{i}_w{w}_k{k}", 1)
            else:
                add("sparse", len(runs))
            add("lmc", len(cover(lmc)))
            add("plane", len(cover(plane)))
            if imp:
                rate = c["prune"].get("rate", 0.2)
                add("imp_barrier", len(cover(imp)) * len(_imp_lineage(sorted(targets), rate, imp["sparsity"])))

        # runs, matches, lmc curves + barriers, IMP-round curves, plane, ensembles, early
        tidy = 1 + flags["matches"] + 2 * flags["lmc"] + flags["imp_barrier"] + flags["plane"] \
            + flags["diversity"] + flags["early_matching"]
        add("collect", tidy)
        add("summary", 1)
        if flags["sweep"]:
            add("figure_accuracy_vs_rewind", 1)
            add("figure_accuracy_vs_rewind_top5", int(top5))
            if len(sparsities) >= 2:
                add("figure_accuracy_vs_sparsity", 1)
                add("figure_accuracy_vs_sparsity_top5", int(top5))
            add("table_accuracy", 1)
        for name, rule in (("lmc", "figure_lmc_width"), ("imp_barrier", "figure_imp_barrier"), ("plane", "figure_plane")):
            add(rule, int(flags[name]))
        for name, rule in (("lmc", "table_lmc"), ("diversity", "table_diversity"), ("early_matching", "table_early_matching")):
            add(rule, int(flags[name]))
    add("prepare", len(datasets))
    add("download", len(datasets & set(DOWNLOADABLE)))
    add("all", 1)
    return counts


# --------------------------------------------------------------------------- tests


@pytest.mark.parametrize("fused", [True, False])
def test_lint_is_clean(tmp_path, fused):
    res = snakemake(["--lint", "--config", f"fused={fused}"], tmp_path)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert "Lints for" not in out, out


@pytest.mark.parametrize("fused", [True, False])
def test_default_config_job_counts(tmp_path, fused):
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["fused"] = fused
    assert dry_run(tmp_path, "--config", f"fused={fused}") == expected_jobs(config)


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_paper_config_job_counts(tmp_path, path):
    config = yaml.safe_load(path.read_text())
    t0 = time.perf_counter()
    stats = dry_run(tmp_path, f"--configfile={path}")
    seconds = time.perf_counter() - t0
    print(f"dry run of {path.name}: {sum(stats.values())} jobs in {seconds:.1f} s")
    assert stats == expected_jobs(config)


def test_default_is_small_and_complete(tmp_path):
    """`make run` must stay a demo: every figure and table type, a modest number of jobs."""
    stats = dry_run(tmp_path)
    kinds = ("accuracy_vs_rewind", "accuracy_vs_sparsity", "lmc_width", "imp_barrier", "plane")
    for kind in kinds:
        assert stats.get(f"figure_{kind}") == 1, kind
    for kind in ("accuracy", "diversity", "early_matching", "lmc"):
        assert stats.get(f"table_{kind}") == 1, kind
    assert stats["summary"] == 1
    assert sum(stats.values()) <= 80  # fused: 68 jobs


def test_one_figure_schedules_only_its_ancestors(tmp_path):
    stats = dry_run(tmp_path, "results/mnist1d/figures/lmc_width.pdf", "--config", "fused=False")
    # lmc at widths 1, 2, 4 and seed 0: dense A+B, match, interpolate per width
    assert stats == {"prepare": 1, "dense": 6, "match": 3, "lmc": 3, "collect": 1, "figure_lmc_width": 1}
    stats = dry_run(tmp_path, "results/mnist1d/figures/lmc_width.pdf", "--config", "fused=True")
    # fused: the dense runs of each width in one job
    assert stats == {"prepare": 1, "dense_fused_mnist1d_0_w1": 1, "dense_fused_mnist1d_0_w2": 1,
                     "dense_fused_mnist1d_0_w4": 1, "match": 3, "lmc": 3, "collect": 1, "figure_lmc_width": 1}


def test_one_sparse_run_schedules_only_its_ancestors(tmp_path):
    target = "results/mnist1d/mnist1d-mlp-w4/seed1/sparse/S0.95/k4/permuted/result.json"
    stats = dry_run(tmp_path, target, "--config", "fused=False")
    assert stats == {"prepare": 1, "dense": 2, "match": 1, "prune_mnist1d_0": 1, "permute_mask": 1, "sparse": 1}


def test_one_width_manifest(tmp_path):
    stats = dry_run(tmp_path, "results/mnist1d/mnist1d-mlp-w1/manifest.txt", "--config", "fused=False")
    assert stats["manifest"] == 1
    assert "figure_lmc_width" not in stats and "summary" not in stats
    # width 1: sweep seeds 0, 1 (2 sparsities x 2 rewind points x 3 branches) and early matching
    assert stats["sparse"] == 2 * 2 * 2 * 3
    assert stats["sparse_early"] == 2 and stats["lmc"] == 1


def test_commands_follow_the_contract(tmp_path):
    """Spot-check the step command lines: seeds, rewind checkpoints, epochs T - k, tags."""
    target = "results/mnist1d/mnist1d-mlp-w4/seed1/sparse/S0.95/k4/naive/result.json"
    res = snakemake([target, "-n", "-p", "--config", "fused=False"], tmp_path)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    train_b = next(line for line in out.splitlines() if "sparsebasin train" in line and "net=B" in line)
    assert "--seed 3 " in train_b  # B of seed 1 -> 2*1+1
    assert "--save-epochs 0,4,5 " in train_b  # rewind points 0, 4 + early-matching epoch 5
    sparse = next(line for line in out.splitlines() if "sparsebasin sparse" in line)
    assert "--init results/mnist1d/mnist1d-mlp-w4/seed1/dense/B/ckpt/epoch4.pt" in sparse
    assert "--mask results/mnist1d/mnist1d-mlp-w4/seed1/prune/S0.95/mask.pt" in sparse
    assert "--epochs 16 " in sparse and "--lr 0.05 " in sparse and "--seed 1001 " in sparse
    for tag in ("experiment=mnist1d", "dataset=mnist1d", "model=mlp", "width=4", "seed=1", "sparsity=0.95", "k=4",
                "branch=naive"):
        assert f"--tag {tag}" in sparse, tag
    prune = next(line for line in out.splitlines() if "sparsebasin prune" in line)
    assert "--targets 0.8,0.95 " in prune and "--seed 2 " in prune and "--chain" in prune


def test_cuda_asks_for_gpus(tmp_path):
    config = tmp_path / "cuda.yaml"
    default = yaml.safe_load((REPO / "config.yaml").read_text())
    default["device"] = "cuda"
    default["fused"] = False
    config.write_text(yaml.safe_dump(default))
    res = snakemake(["results/mnist1d/mnist1d-mlp-w1/seed0/lmc/curve.csv", "-n", "-p", f"--configfile={config}"], tmp_path)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    blocks = out.split("\nrule ")
    for block in blocks[1:]:
        name = block.split(":", 1)[0]
        if name in ("dense", "match", "lmc"):
            assert "gpu=1" in block and "gpu_slot.sh python -m sparsebasin" in block, block
        if name == "prepare":
            assert "gpu=" not in block


def test_every_rule_declares_log_benchmark_threads_resources():
    for path in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        text = path.read_text()
        blocks = re.split(r"(?m)^\s*rule\b", text)[1:]
        for block in blocks:
            name = block.split(":", 1)[0].strip() or block.split("name:", 1)[1].split()[0]
            for directive in ("log:", "benchmark:", "threads:", "resources:", "mem_mb=", "runtime="):
                assert directive in block, f"{path.name}: rule {name} has no {directive}"


def test_training_resources_grow_with_attempt(tmp_path):
    """A retried job gets more runtime: the resources printed for attempt 1 are the base."""
    res = snakemake(["results/mnist1d/mnist1d-mlp-w4/seed0/dense/A/final.pt", "-n", "--config", "fused=False"], tmp_path)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    block = out.split("\nrule dense:")[1]
    runtime = int(re.search(r"runtime=(\d+)", block).group(1))
    assert runtime >= 5
    common = (REPO / "workflow" / "rules" / "common.smk").read_text()
    assert re.search(r"def train_minutes\(.*attempt", common) and "* attempt))" in common


# --------------------------------------------------------------------------- fused mode


def _commands(output: str, step: str) -> list[list[str]]:
    import shlex

    out = []
    for line in output.splitlines():
        marker = f"python -m sparsebasin {step} "
        if marker in line:
            cmd = line[line.index(marker) + len(marker):].split(" > ", 1)[0]
            out.append(shlex.split(cmd))
    return out


def _options(argv: list[str]) -> dict[str, list[str]]:
    opts: dict[str, list[str]] = {}
    i = 0
    while i < len(argv):
        key = argv[i]
        value = argv[i + 1] if i + 1 < len(argv) and not argv[i + 1].startswith("--") else ""
        opts.setdefault(key, []).append(value)
        i += 2 if value else 1
    return opts


def _per_run(opts) -> dict:
    tags = dict(t.split("=", 1) for t in opts.get("--tag", []))
    return {"init": opts.get("--init", [None])[0], "mask": opts.get("--mask", [None])[0],
            "branch": opts.get("--branch", [None])[0], "seed": opts["--seed"][0], "tags": tags,
            "epochs": opts["--epochs"][0], "lr": opts["--lr"][0]}


def _fused_runs(opts) -> dict:
    shared = dict(t.split("=", 1) for t in opts.get("--tag", []))
    runs = {}
    for text in opts["--run"]:
        d = dict(part.split("=", 1) for part in text.split(","))
        tags = {**shared, **{k[4:]: v for k, v in d.items() if k.startswith("tag.")}}
        assert d["seed"] == d["data_seed"]
        runs[d["out_dir"]] = {"init": d.get("init"), "mask": d.get("mask"), "branch": d.get("branch"),
                              "seed": d["seed"], "tags": tags, "epochs": opts["--epochs"][0], "lr": opts["--lr"][0]}
    return runs


def test_fused_mode_trains_exactly_the_per_run_jobs(tmp_path):
    """fused: true groups the runs (one dense job per width, one sparse job per width and k)
    but every run keeps its directory, init, mask, branch, seeds, epochs and tags."""
    plain = snakemake(["-n", "-p", "--config", "fused=False"], tmp_path / "plain")
    fused = snakemake(["-n", "-p", "--config", "fused=True"], tmp_path / "fused")
    assert plain.returncode == 0 and fused.returncode == 0, plain.stderr + fused.stderr
    per_run = {}
    for argv in _commands(plain.stdout, "sparse"):
        opts = _options(argv)
        per_run[opts["--out-dir"][0]] = _per_run(opts)
    grouped = {}
    for argv in _commands(fused.stdout, "fused"):
        opts = _options(argv)
        if "--model" in opts:
            continue  # a dense group
        grouped.update(_fused_runs(opts))
    assert len(per_run) == 56 and grouped == per_run

    dense_plain = {}
    for argv in _commands(plain.stdout, "train"):
        opts = _options(argv)
        dense_plain[opts["--out-dir"][0]] = (opts["--seed"][0], dict(t.split("=", 1) for t in opts["--tag"]),
                                             opts["--save-epochs"][0], opts["--epochs"][0])
    dense_fused = {}
    for argv in _commands(fused.stdout, "fused"):
        opts = _options(argv)
        if "--model" not in opts:
            continue
        for out_dir, run in _fused_runs(opts).items():
            dense_fused[out_dir] = (run["seed"], run["tags"], opts["--save-epochs"][0], opts["--epochs"][0])
    assert len(dense_plain) == 12 and dense_fused == dense_plain
    stats = job_stats(fused.stdout)
    assert sum(v for k, v in stats.items() if k.startswith("dense_fused_")) == 3
    assert sum(v for k, v in stats.items() if k.startswith("sparse_fused_")) == 4
    assert not any(k in stats for k in ("dense", "sparse", "sparse_cross", "sparse_dataorder", "sparse_early"))
