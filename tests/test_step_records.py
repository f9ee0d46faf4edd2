"""Step options as records (issue 26, item 1): a training option is declared once (training.config.option) and
the step CLIs, the plan's command lines, the presets' overrides and the run keys all derive from it; every paper
config keeps exactly its run directories.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
from pathlib import Path

import pytest
import yaml
from workflow_plan import REPO, plan_of

from sparsebasin.plan.keys import train_settings
from sparsebasin.steps import common
from sparsebasin.training.config import PRESETS, TrainConfig, resolve_config, step_options

SCHEMA = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text(encoding="utf-8"))

# sha256 (16 hex) of every planned job's kind and directory, and their count, per config: a change of any key
# (a setting hashed differently, an option added without `key="if_set"`) moves finished runs. Update only on
# purpose, and say so in the commit.
DIRECTORIES = {
    "config/all.yaml": ("85cf3f7e51c0f7a0", 2230),
    "config/cifar100_resnet20.yaml": ("0229dcd73eb09fe5", 780),
    "config/cifar10_resnet20.yaml": ("c21fa27145561a0e", 1102),
    "config/cifar10_vgg11.yaml": ("c234f314512d79e3", 138),
    "config/diversity.yaml": ("dd465164ec238f8b", 80),
    "config/early_matching.yaml": ("140ba2f826a9fbdb", 108),
    "config/imagenet_resnet50.yaml": ("d722481419cda104", 96),
    "config.yaml": ("a5521842cef4ede9", 129),  # 97 before the demo's sweep added the random and signs controls
}


@pytest.mark.parametrize("config", sorted(DIRECTORIES))
def test_every_config_plans_exactly_its_run_directories(config):
    plan = plan_of(REPO / config)
    paths = sorted(f"{kind}\t{path}" for kind, rows in plan.jobs.items() for path in rows)
    assert (hashlib.sha256("\n".join(paths).encode()).hexdigest()[:16], len(paths)) == DIRECTORIES[config]


def _value(f: dataclasses.Field):
    """A valid value of option ``f`` other than the preset's."""
    if f.metadata["choices"]:
        return next(c for c in f.metadata["choices"] if c != getattr(PRESETS["mnist1d_dense"], f.name))
    return {"positive_int": 3, "positive_float": 0.0123, "nonneg_float": 0.5, "momentum": 0.5, "step_gamma": 0.5,
            "boolean": True}[f.metadata["type"]]


@pytest.mark.parametrize("f", [f for f in step_options() if f.name not in ("epochs", "precision")],
                         ids=lambda f: f.name)
def test_an_option_flows_from_the_config_to_the_step_and_into_the_key(f):
    """Set in a cell's dense section, the option reaches the dense step's command line, the step parses it
    back into the TrainConfig the run trains with, and the dense runs' key (directory) changes."""
    value = _value(f)
    for section in ("dense", "sparse"):  # the schema takes it where the plan reads it
        assert f.name in SCHEMA["$defs"][section]["properties"], (section, f.name)
    if not f.metadata["shared"]:
        assert f"ft_{f.name}" in SCHEMA["$defs"]["prune"]["properties"], f.name
    config = yaml.safe_load((REPO / "config.yaml").read_text(encoding="utf-8"))
    config["experiments"]["mnist1d"]["cells"][0]["dense"][f.name] = value
    plan, base = plan_of(config), plan_of(REPO / "config.yaml")
    job = next(iter(plan.jobs["dense"].values()))
    parser = argparse.ArgumentParser()
    common.add_optim_args(parser)
    known, _ = parser.parse_known_args(plan.args(job).split())
    cfg = resolve_config(known.preset, **common.optim_overrides(known))
    assert getattr(cfg, f.name) == value
    assert set(plan.jobs["dense"]).isdisjoint(base.jobs["dense"])  # another setting: other directories


def test_ft_options_reach_the_prune_step():
    config = yaml.safe_load((REPO / "config.yaml").read_text(encoding="utf-8"))
    config["experiments"]["mnist1d"]["cells"][0]["prune"].update(ft_batch_size=64, ft_schedule="step", ft_step_every=2)
    job = next(iter(plan_of(config).jobs["prune"].values()))
    parser = argparse.ArgumentParser()
    common.add_optim_args(parser, preset_default=None, prefix="ft-")
    known, _ = parser.parse_known_args(plan_of(config).args(job).split())
    cfg = resolve_config(known.ft_preset, **common.optim_overrides(known, prefix="ft-"))
    assert (cfg.batch_size, cfg.schedule, cfg.step_every) == (64, "step", 2)


def test_keys_hash_the_declared_options_and_a_new_one_keeps_old_keys():
    cfg = resolve_config("dense", lr=0.1)
    assert cfg.key_dict() == cfg.to_dict()  # every option of today is "always"
    # an option added later with key="if_set" leaves every key as it was while it is at its default
    extra = dataclasses.make_dataclass(
        "Later", [("label_smoothing", float, dataclasses.field(default=0.0, metadata={"key": "if_set"}))],
        bases=(TrainConfig,), frozen=True)
    later = extra(**cfg.to_dict())
    assert TrainConfig.key_dict(later) == cfg.key_dict()
    assert TrainConfig.key_dict(dataclasses.replace(later, label_smoothing=0.1))["label_smoothing"] == 0.1
    assert train_settings({"preset": "dense", "lr": 0.1}, "bf16")["lr"] == 0.1


def test_unknown_override_is_one_line():
    with pytest.raises(Exception, match="unknown setting 'learning_rate'"):
        resolve_config("dense", learning_rate=0.1)


def test_result_free_options_are_never_in_a_jobs_params():
    """Tracking, progress, threads, deterministic kernels and compilation never reach a job's args (the rules'
    Snakemake params), so toggling them reruns nothing (issue 27, item 4)."""
    plan = plan_of(None, tracking={"backend": "tensorboard"}, deterministic=True, threads=3, fused=False)
    for kind, rows in plan.jobs.items():
        for job in list(rows.values())[:3]:
            args = plan.args(job)
            for option in ("--tracker", "--progress", "--threads", "--deterministic", "--compile"):
                assert option not in args, (kind, option)
    assert "--deterministic" in plan.run_only_args() and "--tracker tensorboard" in plan.run_only_args()
    assert Path(REPO / "workflow" / "rules" / "common.smk").read_text(encoding="utf-8").count("lambda wc, threads") >= 2
