"""The run table (sparsebasin.plan): torch-free, one row per distinct run, shared across experiments,
and the extension point it serves (a new architecture is one module, run end to end by the workflow)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from workflow_plan import REPO, find, plan_of

CONFIGS = sorted(p for p in (REPO / "config").glob("*.yaml") if p.stem not in ("all", "baselines"))  # the paper's


def _paths(plan) -> dict[str, set[str]]:
    return {kind: set(rows) for kind, rows in plan.jobs.items()}


def test_planning_imports_no_torch():
    """The Snakemake process plans the whole paper, every job's command line included (the rules' params, from
    the step records), without importing torch (start-up stays cheap)."""
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(REPO / 'src')!r}); sys.path.insert(0, {str(REPO / 'tests')!r})
        from workflow_plan import plan_of
        plan = plan_of({str(REPO / 'config' / 'all.yaml')!r})
        assert sum(map(len, plan.jobs.values())) > 1000
        assert all(plan.args(job) for rows in plan.jobs.values() for job in rows.values())
        assert all(fj.args for fj in plan.fused_jobs())
        heavy = sorted(m for m in ("torch", "numpy", "torchvision", "matplotlib") if m in sys.modules)
        print(heavy)
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]", res.stdout


def test_the_whole_paper_is_the_union_of_its_experiments():
    """config/all.yaml plans exactly the runs of the six experiment configs, each once."""
    whole = _paths(plan_of(REPO / "config" / "all.yaml"))
    union: dict[str, set[str]] = {kind: set() for kind in whole}
    total = {kind: 0 for kind in whole}
    for path in CONFIGS:
        for kind, rows in _paths(plan_of(path)).items():
            union[kind] |= rows
            total[kind] += len(rows)
    assert whole == union
    assert total["dense"] > len(whole["dense"]), "the CIFAR-10 ResNet20 dense models are shared by three experiments"


def test_a_shared_run_serves_every_experiment_that_uses_it():
    """A run several experiments need keeps what each needs: a dense model the union of their rewind
    checkpoints, an IMP chain the union of their target sparsities."""
    plan = plan_of(REPO / "config" / "all.yaml")
    singles = {p.stem: plan_of(p) for p in CONFIGS}
    for kind, field in (("dense", "save_epochs"), ("prune", "targets")):
        shared = [j for j in plan.jobs[kind].values() if len({e for e, _ in j.uses}) > 1]
        assert shared, kind
        for job in shared:
            users = {e for e, _ in job.uses}
            need = set().union(*(singles[e].jobs[kind][job.path].spec[field] for e in users))
            assert job.spec[field] == need, (job.path, users)
            assert job.uses == set().union(*(singles[e].jobs[kind][job.path].uses for e in users))


def test_equal_settings_spelled_differently_share_a_directory():
    """A preset value written out explicitly is the same run as the preset's default."""
    base = yaml.safe_load((REPO / "config.yaml").read_text())
    spelled = json.loads(json.dumps(base))
    cell = spelled["experiments"]["mnist1d"]["cells"][0]
    cell["dense"]["preset"] = "dense"
    cell["dense"].setdefault("warmup_epochs", 0)
    assert _paths(plan_of(base)) == _paths(plan_of(spelled))
    changed = json.loads(json.dumps(base))
    changed["experiments"]["mnist1d"]["cells"][0]["sparse"]["lr"] = 0.0123
    a, b = _paths(plan_of(base)), _paths(plan_of(changed))
    assert a["dense"] == b["dense"] and a["prune"] == b["prune"] and a["match"] == b["match"]
    assert not a["sparse"] & b["sparse"], "a different sparse lr is a different sparse run"


def test_two_settings_with_one_key_are_refused(monkeypatch):
    from sparsebasin.plan import table
    from sparsebasin.plan.config import ConfigError

    monkeypatch.setattr(table, "key", lambda material, n=8: "0" * n)
    with pytest.raises(ConfigError, match="hash to the key 00000000"):
        plan_of()


def test_plan_cli_prints_the_target_to_ask_for(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    cmd = [sys.executable, "-m", "sparsebasin", "plan", "--configfile", str(REPO / "config.yaml"), "--kind", "sparse",
           "--where", "width=4", "--where", "seed=1", "--where", "sparsity=0.95", "--where", "k=4",
           "--where", "branch=permuted", "--where", "match_epoch=20", "--targets"]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    want = find("sparse", width=4, seed=1, sparsity=0.95, k=4, branch="permuted", match_epoch=20)
    assert res.stdout.split() == [f"{want}/result.json"]
    table = subprocess.run(cmd[:-1], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    header, row = table.stdout.splitlines()
    assert dict(zip(header.split("\t"), row.split("\t")))["experiments"] == "mnist1d"
    bad = subprocess.run(cmd[:5] + ["--where", "width"], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert bad.returncode != 0 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr


# --------------------------------------------------------------------------- a new architecture

TOY = '''
"""A toy architecture living outside the package: two hidden layers named its own way, with arguments of its
own (units, a second layer factor) that no built-in model takes."""
import torch
from torch import nn

from sparsebasin.models._spec import SpecBuilder

ARCH = {
    "name": "toynet",
    "label": "ToyNet",
    "input": "flat",
    "widths": None,
    "model_args": {"units": 8, "second_factor": 1},
    "never_prune": [],
    "fused": False,
    "fused_engine_cpu": "grouped",
    "cost": {"epoch_minutes": 0.01, "cpu_slowdown": 1.0, "width_exponent": 1.0,
             "width_ref": 1.0, "mem_mb_per_width2": 0, "gflops_per_image": 0.0001},
}


class ToyNet(nn.Module):
    def __init__(self, input_size, num_classes, width=1, units=8, second_factor=1):
        super().__init__()
        self.first = nn.Linear(input_size, units * width)
        self.second = nn.Linear(units * width, units * second_factor * width)
        self.out = nn.Linear(units * second_factor * width, num_classes)

    def forward(self, x):
        x = torch.relu(self.first(x.flatten(1)))
        return self.out(torch.relu(self.second(x)))


def build(cfg, num_classes, in_channels, input_size):
    return ToyNet(input_size, num_classes, width=cfg["width"], units=cfg.get("units", 8),
                  second_factor=cfg.get("second_factor", 1))


def permutation_spec(model, stream_points="stage_output"):
    b = SpecBuilder("toynet", model)
    g1 = b.group("first", "first", relu=True)
    b.linear("first", g1, None)
    g2 = b.group("second", "second", relu=True)
    b.linear("second", g2, g1)
    b.linear("out", None, g2)
    return b.build()
'''


@pytest.mark.slow
def test_a_new_architecture_is_one_module_and_runs_end_to_end(tmp_path, monkeypatch):
    """A toy architecture in a temporary module (SPARSEBASIN_PLUGINS): the whole workflow, every figure."""
    from sparsebasin.data import mnist1d

    plugin = tmp_path / "plugins"
    plugin.mkdir()
    (plugin / "toy_arch.py").write_text(TOY)
    config = {
        "device": "cpu", "threads": 1, "data_dir": str(tmp_path / "data"),
        "experiments": {"toy": {"cells": [{
            "dataset": "mnist1d", "model": "toynet", "model_args": {"units": 6, "second_factor": 2}, "widths": [1],
            "seeds": [0],
            "dense": {"epochs": 2, "lr": 0.05, "momentum": 0.9, "weight_decay": 0.0005, "batch_size": 64},
            "sparse": {"lr": 0.05},
            "prune": {"rate": 0.5, "ft_epochs": 1, "ft_lr": 0.01},
            "match": {"batches": 2, "batch_size": 128},
            "sweep": {"sparsities": [0.5], "rewind": [0]},
            "lmc": {"alphas": 3, "modes": ["plain"]},
        }]}},
    }
    (tmp_path / "toy.yaml").write_text(yaml.safe_dump(config))
    mnist1d.write_cache(tmp_path / "data", mnist1d.generate(mnist1d.MNIST1DConfig(n_train=600, n_test=200, seed=0)))
    env = dict(os.environ, SPARSEBASIN_PLUGINS="toy_arch", OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(plugin), str(REPO / "src"), os.environ.get("PYTHONPATH", "")]),
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    res = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path),
                          "--configfile", str(tmp_path / "toy.yaml"), "--cores", "2"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, (res.stdout + res.stderr)[-5000:]
    monkeypatch.syspath_prepend(str(plugin))  # this process plans with the plugin too (find below)
    monkeypatch.setenv("SPARSEBASIN_PLUGINS", "toy_arch")
    summary = (tmp_path / "results" / "toy" / "summary.md").read_text()
    assert "ToyNet" in summary, summary[:2000]
    for branch in ("lth", "naive", "permuted"):
        run = tmp_path / find("sparse", config, model="toynet", branch=branch)
        result = json.loads((run / "result.json").read_text())
        assert 0.0 <= result["test_acc"] <= 1.0
    match = json.loads((tmp_path / find("match", config) / "perm.json").read_text())
    assert set(match["group_size"]) == {"first", "second"}
    # the plug-in's own model arguments reached every step (issue 26, item 5): the models have their sizes
    assert match["group_size"] == {"first": 6, "second": 12}
    dense = json.loads((tmp_path / find("dense", config, net="A") / "result.json").read_text())
    assert dense["request"]["model"] == {"name": "toynet", "width": 1, "units": 6, "second_factor": 2}
    assert (tmp_path / "results" / "toy" / "figures" / "lmc_width.png").stat().st_size > 0


def test_a_memory_budget_splits_fused_groups_and_leaves_the_rest_to_the_plain_rules():
    """fused_memory_mb caps a fused job's runs (near-equal parts); fused_widths and groups of one run stay plain."""
    from sparsebasin.plan import resources

    config = yaml.safe_load((REPO / "config" / "cifar10_resnet20.yaml").read_text())
    plan = plan_of(config)
    by_group: dict = {}
    for fj in plan.fused_jobs():
        j = fj.jobs[0]
        by_group.setdefault((j.kind, j.width, j.spec.get("k")), []).append(len(fj.jobs))
        assert {x.width for x in fj.jobs} == {j.width} and j.width in (1, 4)  # x8/x16: fused_widths []
        per_run = resources.run_device_mem_mb("resnet20", j.width, 128)
        assert len(fj.jobs) * per_run + resources.FUSED_OVERHEAD_MB <= config["fused_memory_mb"]
    parts = by_group[("sparse", 4, 0)]
    assert len(parts) > 1 and max(parts) - min(parts) <= 1  # near-equal parts of one group
    assert by_group[("dense", 1, None)] == [6]  # A and B of 3 seeds fit one job at width 1
    fused = {j.path for fj in plan.fused_jobs() for j in fj.jobs}
    plain = [j for j in plan.jobs["sparse"].values() if j.path not in fused]
    assert plain and {j.width for j in plain} == {8, 16} and plan.unfused("sparse")
    # no budget: one job per group, as before
    whole = plan_of(config, fused_memory_mb=0)
    assert [len(fj.jobs) for fj in whole.fused_jobs() if fj.jobs[0].width == 4 and fj.jobs[0].spec.get("k") == 0
            and fj.jobs[0].kind == "sparse"] == [sum(parts)]
    # ImageNet's ResNet50 is not fusable: fused: true leaves every run to the plain rules
    imagenet = plan_of(REPO / "config" / "imagenet_resnet50.yaml", fused=True)
    assert imagenet.fused_jobs() == [] and imagenet.unfused("dense") and imagenet.unfused("sparse")


def test_lmc_train_split_sample_reaches_the_command_and_only_its_keys():
    """ImageNet's LMC evaluates the train split on a 50,000-image seeded sample; configs without the key keep
    their directories (the key material is unchanged) and pass no option."""
    imagenet = plan_of(REPO / "config" / "imagenet_resnet50.yaml")
    jobs = list(imagenet.jobs["lmc"].values())
    assert jobs and all("--train-eval-examples 50000" in imagenet.args(j) for j in jobs)
    cifar = plan_of(REPO / "config" / "cifar10_resnet20.yaml")
    for kind in ("lmc", "imp_barrier"):
        assert cifar.jobs[kind] and not any("--train-eval-examples" in cifar.args(j) for j in cifar.jobs[kind].values())
    with_sample = yaml.safe_load((REPO / "config" / "cifar10_resnet20.yaml").read_text())
    for exp in with_sample["experiments"].values():
        for cell in exp["cells"]:
            if "lmc" in cell:
                cell["lmc"] = {**cell["lmc"], "train_eval_examples": 1000}
    other = plan_of(with_sample)
    assert set(other.jobs["lmc"]).isdisjoint(cifar.jobs["lmc"])  # another sample is another result
    assert set(other.jobs["imp_barrier"]) == set(cifar.jobs["imp_barrier"])


def test_gpus_per_run_makes_dense_prune_and_sparse_rows_data_parallel():
    """ImageNet's dense, IMP and sparse runs on 8 GPUs each through torchrun: launcher, CPUs, memory and GPUs
    scale with the processes, the runtime shrinks; matching and LMC stay on one; other cells keep their keys."""
    imagenet = plan_of(REPO / "config" / "imagenet_resnet50.yaml")
    for kind in ("dense", "prune", "sparse"):
        job = next(iter(imagenet.jobs[kind].values()))
        assert imagenet.processes(job) == 8 and imagenet.threads(job) == 8 * imagenet.threads_each(job)
        assert imagenet.launcher(job).endswith("torch.distributed.run --standalone --nproc_per_node 8 -m sparsebasin")
    for kind in ("match", "lmc"):
        job = next(iter(imagenet.jobs[kind].values()))
        assert imagenet.processes(job) == 1 and imagenet.launcher(job) == "python -m sparsebasin"
    raw = yaml.safe_load((REPO / "config" / "imagenet_resnet50.yaml").read_text())
    for exp in raw["experiments"].values():
        for cell in exp["cells"]:
            cell.pop("gpus_per_run")
    one = plan_of(raw)
    assert set(one.jobs["dense"]).isdisjoint(imagenet.jobs["dense"])  # 8 processes round otherwise: other runs
    a, b = next(iter(one.jobs["dense"].values())), next(iter(imagenet.jobs["dense"].values()))
    assert imagenet.mem_mb(b, 1) == 8 * one.mem_mb(a, 1) and imagenet.runtime(b, 1) < one.runtime(a, 1)
    # a data-parallel cell is never fused (the fused step is one process)
    assert plan_of(REPO / "config" / "imagenet_resnet50.yaml", fused=True).fused_jobs() == []


def test_sync_bn_reaches_the_data_parallel_steps_and_their_keys():
    from sparsebasin.plan.config import ConfigError

    raw = yaml.safe_load((REPO / "config" / "imagenet_resnet50.yaml").read_text())
    for exp in raw["experiments"].values():
        for cell in exp["cells"]:
            cell["sync_bn"] = True
    synced, per_rank = plan_of(raw), plan_of(REPO / "config" / "imagenet_resnet50.yaml")
    for kind in ("dense", "prune", "sparse", "match"):
        job = next(iter(synced.jobs[kind].values()))
        assert synced.args(job).endswith(" --sync-bn") == (kind != "match"), kind
        assert set(synced.jobs[kind]).isdisjoint(per_rank.jobs[kind]), kind  # other statistics: other runs
    next(iter(raw["experiments"].values()))["cells"][0]["gpus_per_run"] = 1
    with pytest.raises(ConfigError, match=r"cells\[0\]\.sync_bn = true needs gpus_per_run > 1"):
        plan_of(raw)


def test_gpus_per_run_must_divide_the_global_batches():
    from sparsebasin.plan.config import ConfigError

    raw = yaml.safe_load((REPO / "config" / "imagenet_resnet50.yaml").read_text())
    cell = next(iter(raw["experiments"].values()))["cells"][0]
    cell["gpus_per_run"] = 3
    with pytest.raises(ConfigError, match=r"cells\[0\]\.gpus_per_run = 3: dense\.batch_size 1024 .* multiple of 3"):
        plan_of(raw)
    cell["gpus_per_run"] = 16  # 1024 divides; the IMP fine-tuning's global batch must too
    cell["prune"]["ft_batch_size"] = 1000
    with pytest.raises(ConfigError, match=r"gpus_per_run = 16: prune\.ft_batch_size 1000 \(the global batch\) is not"):
        plan_of(raw)
    del cell["prune"]["ft_batch_size"]
    cell["prune"]["ft_preset"], cell["gpus_per_run"] = "dense", 256  # an unset batch size is the preset's: 128
    with pytest.raises(ConfigError, match=r"prune\.ft_batch_size 128 \(the global batch, from the preset dense\)"):
        plan_of(raw)
