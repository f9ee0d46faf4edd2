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

from sparsebasin import registry
from sparsebasin.plan import resources
from workflow_plan import families, find, plan_of

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


def _settings(c, *names):
    import json

    return json.dumps([c.get(n) for n in names], sort_keys=True, default=str)


def expected_jobs(config: dict) -> dict[str, int]:
    """Jobs per rule family for a whole config, from the study definitions (docs/workflow.md).

    Each job is an identity built from what determines it (dataset, model, width, seed, the settings
    of its stage); experiments that ask for the same identity share one job. The counts are the sizes
    of those sets, computed here without the library's plan.
    """
    counts: dict[str, int] = {}
    jobs: dict[str, set] = {}
    fused = bool(config.get("fused", False))

    def add(rule, n):
        if n:
            counts[rule] = counts.get(rule, 0) + n

    def job(kind, *identity):
        jobs.setdefault(kind, set()).add(identity)

    prune_targets: dict[tuple, set] = {}
    fusing: dict[tuple, tuple] = {}  # (dense or sparse identity, width) -> (model, batch size, fused here?)
    datasets = set()
    for exp, e in config["experiments"].items():
        flags = {"sweep": False, "lmc": False, "imp_barrier": False, "plane": False, "diversity": False,
                 "early_matching": False, "matches": False}
        sparsities, top5 = set(), "test_top5" in e.get("metrics", ["test_acc"])
        imp_requests = []
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
            base = (c["dataset"], c["model"], _settings(c, "model_args", "train_subset", "dense"))
            prune_id = base + (_settings(c, "prune"),)
            match_id = base + (_settings(c, "match"),)
            sparse_id = prune_id + (_settings(c, "match", "sparse"),)

            need_b = cover(sweep) | cover(lmc) | cover(plane) | cover(div) | cover(early)
            need_a = need_b | cover(imp)
            for w, s in need_a:
                job("dense", base, w, s, "A")
            for w, s in need_b:
                job("dense", base, w, s, "B")
            for w, s in cover(sweep) | cover(imp) | cover(plane) | cover(div) | cover(early):
                prune_targets.setdefault((prune_id, w, s), set()).update(targets)

            matched = cover(sweep) | cover(lmc) | cover(plane)
            methods = c["match"].get("method", "activation")
            methods = methods if isinstance(methods, list) else [methods]  # the first is the cell's own
            for w, s in cover(sweep) | cover(lmc):  # every other method's matching, per pair it serves
                for m in methods[1:]:
                    job("match", match_id, w, s, ("method", m))
            runs = set()
            for w, s in cover(sweep):
                for S in sweep["sparsities"]:
                    for k in sweep["rewind"]:
                        runs.update((w, s, _fmt(S), k, b, None) for b in sweep.get("branches", BRANCHES))
                        if "permuted" in sweep.get("branches", BRANCHES):
                            runs.update((w, s, _fmt(S), k, "permuted", ("method", m)) for m in methods[1:])
            for w, s in cover(plane):
                runs.update((w, s, _fmt(plane["sparsity"]), plane["k"], b, None) for b in ("lth", "permuted"))
            if div:
                members = div["seeds"] if "seeds" in div else seeds
                anchor = members[0]
                for w in div.get("widths", widths):
                    matched.add((w, anchor))
                    runs.update((w, anchor, _fmt(div["sparsity"]), div["k"], b, None) for b in BRANCHES)
                    for j in members[1:]:
                        job("match", match_id, w, anchor, ("cross", j))
                        runs.update((w, anchor, _fmt(div["sparsity"]), div["k"], b, ("cross", j))
                                    for b in ("naive", "permuted"))
                        runs.add((w, anchor, _fmt(div["sparsity"]), div["k"], "lth", ("dataorder", j)))
                    add("ensemble", len(GROUPS))
            if early:
                early_epochs = [x for x in early["epochs"] if x < T]
                for w, s in cover(early):
                    for x in early_epochs:
                        job("match", match_id, w, s, ("early", x))
                    for S in early["sparsities"]:
                        runs.update((w, s, _fmt(S), early["k"], b, None) for b in ("lth", "naive"))
                        for x in early_epochs:
                            runs.add((w, s, _fmt(S), early["k"], "permuted", ("early", x)))
                        if T in early["epochs"]:
                            matched.add((w, s))
                            runs.add((w, s, _fmt(S), early["k"], "permuted", None))
            for w, s in matched:
                job("match", match_id, w, s)
            if matched and (sweep or lmc or plane or div or (early and T in early["epochs"])):
                flags["matches"] = True
            for w in widths:
                here = w in c.get("fused_widths", widths)
                fusing[(base, w)] = (c["model"], c["dense"].get("batch_size", 128), here)
                fusing[(sparse_id, w)] = (c["model"], {**c["dense"], **c["sparse"]}.get("batch_size", 128), here)
            for run in runs:
                job("sparse", sparse_id, *run)
            for w, s in cover(lmc):
                for m in methods:
                    job("lmc", match_id, w, s, _settings(lmc, "alphas", "modes"), m)
            for w, s in cover(plane):
                job("plane", sparse_id, w, s, _settings(plane, "grid", "sparsity", "k"))
            if imp:
                for w, s in cover(imp):
                    imp_requests.append((prune_id, w, s, imp, c["prune"].get("rate", 0.2)))
        for prune_key, w, s, imp, rate in imp_requests:
            job("imp_requests", prune_key, w, s, imp["sparsity"], _settings(imp, "alphas", "modes"), rate)

        # runs, matches, lmc curves + barriers, IMP-round curves, plane, ensembles, early
        tidy = 1 + flags["matches"] + 2 * flags["lmc"] + flags["imp_barrier"] + flags["plane"] \
            + flags["diversity"] + flags["early_matching"]
        add("collect", tidy)
        add("summary", 1)
        add("scorecard", 1)
        if flags["sweep"]:
            # the baselines figure and table: a sweep with a control branch (sparsebasin.branches)
            controls = any(set((c.get("sweep") or {}).get("branches", BRANCHES)) - set(BRANCHES)
                           or isinstance(c["match"].get("method"), list) and len(c["match"]["method"]) > 1
                           or len((c.get("sweep") or {}).get("match_epochs", [0])) > 1 for c in e["cells"])
            add("figure_baselines", int(controls))
            add("table_baselines", int(controls))
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
    # IMP-round barriers: the rounds on the way to the target in the chain the prune directory runs
    # (the union of every experiment's targets for it)
    for prune_key, w, s, target, _, rate in jobs.get("imp_requests", set()):
        add("imp_barrier", len(_imp_lineage(sorted(prune_targets[(prune_key, w, s)]), rate, target)))
    groups: dict[tuple, int] = {}  # (kind, identity, width[, k]) -> runs
    for b, w, s, net in jobs.get("dense", set()):
        groups[("dense", b, w)] = groups.get(("dense", b, w), 0) + 1
    for sid, w, s, S, k, branch, variant in jobs.get("sparse", set()):
        groups[("sparse", sid, w, k)] = groups.get(("sparse", sid, w, k), 0) + 1
    for (kind, ident, w, *_), n in groups.items():
        model, batch, here = fusing[(ident, w)]
        parts = []
        if fused and here and registry.architecture(model)["fused"]:
            # near-equal parts within fused_memory_mb; a part of one run is a plain job
            size = resources.fused_group_size(model, w, batch, config.get("fused_memory_mb", 0)) or n
            k = -(-n // size)
            parts = [p for p in ((i + 1) * n // k - i * n // k for i in range(k)) if p >= 2]
        add(f"{kind}_fused", len(parts))
        add(kind, n - sum(parts))
    add("prune", len(prune_targets))
    for kind in ("match", "lmc", "plane"):
        add(kind, len(jobs.get(kind, set())))
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
    assert families(dry_run(tmp_path, "--config", f"fused={fused}")) == expected_jobs(config)


@pytest.mark.slow
@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_paper_config_job_counts(tmp_path, path):
    config = yaml.safe_load(path.read_text())
    t0 = time.perf_counter()
    stats = dry_run(tmp_path, f"--configfile={path}")
    seconds = time.perf_counter() - t0
    print(f"dry run of {path.name}: {sum(stats.values())} jobs in {seconds:.1f} s")
    assert families(stats) == expected_jobs(config)


def test_default_is_small_and_complete(tmp_path):
    """`make run` must stay a demo: every figure and table type, a modest number of jobs."""
    stats = dry_run(tmp_path)
    kinds = ("accuracy_vs_rewind", "accuracy_vs_sparsity", "lmc_width", "imp_barrier", "plane")
    for kind in kinds:
        assert stats.get(f"figure_{kind}") == 1, kind
    for kind in ("accuracy", "diversity", "early_matching", "lmc"):
        assert stats.get(f"table_{kind}") == 1, kind
    assert stats["summary"] == 1
    assert sum(stats.values()) <= 80  # fused: 57 jobs


@pytest.mark.slow
def test_one_figure_schedules_only_its_ancestors(tmp_path):
    stats = dry_run(tmp_path, "results/mnist1d/figures/lmc_width.pdf", "--config", "fused=False")
    # lmc at widths 1, 2, 4 and seed 0: dense A+B, match, interpolate per width
    assert stats == {"prepare": 1, "dense": 6, "match": 3, "lmc": 3, "collect": 1, "figure_lmc_width": 1}
    stats = dry_run(tmp_path, "results/mnist1d/figures/lmc_width.pdf", "--config", "fused=True")
    # fused: the dense runs of each width in one job
    assert families(stats) == {"prepare": 1, "dense_fused": 3, "match": 3, "lmc": 3, "collect": 1,
                               "figure_lmc_width": 1}


def test_one_sparse_run_schedules_only_its_ancestors(tmp_path):
    run = find("sparse", width=4, seed=1, sparsity=0.95, k=4, branch="permuted", match_epoch=20)
    stats = dry_run(tmp_path, f"{run}/result.json", "--config", "fused=False")
    assert stats == {"prepare": 1, "dense": 2, "match": 1, "prune_0": 1, "sparse": 1}


def test_one_width_manifest(tmp_path):
    stats = dry_run(tmp_path, "results/mnist1d/mnist1d-mlp-w1/manifest.txt", "--config", "fused=False")
    assert stats["manifest"] == 1
    assert "figure_lmc_width" not in stats and "summary" not in stats
    # width 1: sweep seeds 0, 1 (2 sparsities x 2 rewind points x 5 branches: the paper's and two controls)
    assert stats["sparse"] == 2 * 2 * 2 * 5 + 2  # and the two early-matching runs (e5, seeds 0 and 1)
    assert stats["lmc"] == 1


def test_commands_follow_the_contract(tmp_path):
    """Spot-check the step command lines: seeds, rewind checkpoints, epochs T - k, tags."""
    run = find("sparse", width=4, seed=1, sparsity=0.95, k=4, branch="naive", member=None)
    res = snakemake([f"{run}/result.json", "-n", "-p", "--config", "fused=False"], tmp_path)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    train_b = next(line for line in out.splitlines() if "sparsebasin train" in line and "net=B" in line)
    assert "--seed 3 " in train_b  # B of seed 1 -> 2*1+1
    assert "--save-epochs 0,4,5 " in train_b  # rewind points 0, 4 + early-matching epoch 5
    sparse = next(line for line in out.splitlines() if "sparsebasin sparse" in line)
    dense_b = find("dense", width=4, seed=1, net="B")
    prune = find("prune", width=4, seed=1)
    assert f"--init {dense_b}/ckpt/epoch4.pt" in sparse
    assert f"--mask {prune}/S0.95/mask.pt" in sparse
    assert "--epochs 16 " in sparse and "--lr 0.05 " in sparse and "--seed 1001 " in sparse
    for tag in ("dataset=mnist1d", "model=mlp", "width=4", "seed=1", "sparsity=0.95", "k=4", "branch=naive"):
        assert f"--tag {tag}" in sparse, tag
    assert "experiment=" not in sparse  # a run may serve several experiments: collect adds the experiment
    prune = next(line for line in out.splitlines() if "sparsebasin prune" in line)
    assert "--targets 0.8,0.95 " in prune and "--seed 2 " in prune and "--chain" in prune


@pytest.mark.parametrize("overlay", [True, False])
def test_scorecard_and_the_paper_overlay_switch(tmp_path, overlay):
    """The scorecard reads the experiment's tidy tables; paper_reference: false drops the figures' paper lines."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["experiments"]["mnist1d"]["paper_reference"] = overlay
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    res = snakemake(["results/mnist1d/summary.md", "results/mnist1d/figures/accuracy_vs_rewind.pdf", "-n", "-p",
                     f"--configfile={path}"], tmp_path)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    card = next(line for line in out.splitlines() if "sparsebasin scorecard " in line)
    for table in ("runs", "ensembles", "early", "lmc_barriers"):
        assert f"results/mnist1d/tidy/{table}.csv" in card, table
    assert "--metrics test_acc " in card and "--out-json results/mnist1d/tables/scorecard.json" in card
    summary = next(line for line in out.splitlines() if "sparsebasin summary " in line)
    assert "--scorecard results/mnist1d/tables/scorecard.json" in summary
    figure = next(line for line in out.splitlines() if "sparsebasin figure --kind accuracy_vs_rewind" in line)
    assert ("--paper-reference" in figure) == overlay


def test_cuda_asks_for_gpus(tmp_path):
    config = tmp_path / "cuda.yaml"
    default = yaml.safe_load((REPO / "config.yaml").read_text())
    default["device"] = "cuda"
    default["fused"] = False
    config.write_text(yaml.safe_dump(default))
    lmc = find("lmc", config, width=1, seed=0)
    res = snakemake([f"{lmc}/curve.csv", "-n", "-p", f"--configfile={config}"], tmp_path)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    blocks = out.split("\nrule ")
    for block in blocks[1:]:
        name = block.split(":", 1)[0]
        if name in ("dense", "match", "lmc"):  # (the config file above is cuda, the lmc's path is the same)
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
    dense = find("dense", width=4, seed=0, net="A")
    res = snakemake([f"{dense}/final.pt", "-n", "--config", "fused=False"], tmp_path)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    block = out.split("\nrule dense:")[1]
    runtime = int(re.search(r"runtime=(\d+)", block).group(1))
    assert runtime >= 5
    from sparsebasin.plan import resources

    first, second = (resources.train_minutes("mlp", "mnist1d", 4, 10, a, "cpu", 1.0) for a in (1, 2))
    assert first == runtime and 2 * first - 1 <= second <= 2 * first
    assert resources.train_mem("mlp", "mnist1d", 4, 2) > resources.train_mem("mlp", "mnist1d", 4, 1)


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


@pytest.mark.slow
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
    assert len(per_run) == 88 and grouped == per_run  # 56 of the paper's branches, 32 of the two controls

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
