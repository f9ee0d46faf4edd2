"""Step options as records (issue 26, item 1): a training, matching or evaluation option is declared once
(options.option, in TrainConfig, MatchOptions or EvalOptions) and the step CLIs, the plan's command lines, the
presets' overrides and the run keys all derive from it; every paper config keeps exactly its run directories.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import shlex
from pathlib import Path

import pytest
import yaml
from workflow_plan import REPO, plan_of

from sparsebasin.options import declared, option, section_argv, section_key
from sparsebasin.plan.keys import train_settings
from sparsebasin.pruning.schedule import IMPOptions
from sparsebasin.steps import common, interpolate
from sparsebasin.steps import match as match_step
from sparsebasin.steps import plane as plane_step
from sparsebasin.steps import prune as prune_step
from sparsebasin.symmetry.align import MatchOptions
from sparsebasin.symmetry.landscape import EvalOptions
from sparsebasin.training.config import PRESETS, TrainConfig, resolve_config

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


# ... and of every job's command line (the rules' Snakemake params: a change reruns finished jobs).
COMMAND_LINES = {
    "config/all.yaml": "8b256ec18ad64036",
    "config/cifar100_resnet20.yaml": "da761747927ea7b1",
    "config/cifar10_resnet20.yaml": "9abce7c457018a4e",
    "config/cifar10_vgg11.yaml": "74a84c44890b0e58",
    "config/diversity.yaml": "b91fa3807b252847",
    "config/early_matching.yaml": "5dcb4a47f0079169",
    "config/imagenet_resnet50.yaml": "070fe3f2f586b519",
    "config.yaml": "eaf7b3fdec5751a7",
}


def _digest(lines) -> str:
    return hashlib.sha256("\n".join(sorted(lines)).encode()).hexdigest()[:16]


@pytest.mark.parametrize("config", sorted(DIRECTORIES))
def test_every_config_plans_exactly_its_run_directories_and_command_lines(config):
    plan = plan_of(REPO / config)
    paths = [f"{kind}\t{path}" for kind, rows in plan.jobs.items() for path in rows]
    assert (_digest(paths), len(paths)) == DIRECTORIES[config]
    assert _digest(f"{kind}\t{path}\t{plan.args(job)}" for kind, rows in plan.jobs.items()
                   for path, job in rows.items()) == COMMAND_LINES[config]


def _value(f: dataclasses.Field):
    """A valid value of option ``f`` other than the preset's."""
    if f.metadata["choices"]:
        return next(c for c in f.metadata["choices"] if c != getattr(PRESETS["mnist1d_dense"], f.name))
    return {"positive_int": 3, "positive_float": 0.0123, "nonneg_float": 0.5, "momentum": 0.5, "step_gamma": 0.5,
            "boolean": True}[f.metadata["type"]]


@pytest.mark.parametrize("f", [f for f in declared(TrainConfig) if f.name not in ("epochs", "precision")],
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
            for flag in ("--tracker", "--progress", "--threads", "--deterministic", "--compile"):
                assert flag not in args, (kind, flag)
    assert "--deterministic" in plan.run_only_args() and "--tracker tensorboard" in plan.run_only_args()
    assert Path(REPO / "workflow" / "rules" / "common.smk").read_text(encoding="utf-8").count("lambda wc, threads") >= 2


# ------------------------------------------- matching and evaluation --
# The other step records (options.option): a config key of these sections that is not one of the study's own
# (which runs: widths, seeds, sparsity, ...; the interpolation grid) nor IMP's fine-tuning (ft_*: TrainConfig,
# above) is an option the plan passes from the record, and the step parses back into the same record.
STEP_SECTIONS = {"prune": (IMPOptions, "prune"), "match": (MatchOptions, "match"), "lmc": (EvalOptions, "lmc"),
                 "imp_barrier": (EvalOptions, "imp_barrier"), "plane": (EvalOptions, "plane")}
STUDY_KEYS = {"method", "widths", "seeds", "width", "seed", "sparsity", "k", "alphas", "modes", "grid"}
STEP_PARSERS = {"prune": (prune_step.add_arguments, ["--out-dir", "d"]),
                "match": (match_step.add_arguments, ["--out", "p.pt", "--summary", "p.json"]),
                "lmc": (interpolate.add_arguments, ["--out", "c.csv", "--barriers", "b.json"]),
                "imp_barrier": (interpolate.add_arguments, ["--out", "c.csv", "--barriers", "b.json"]),
                "plane": (plane_step.add_arguments, ["--out", "p.csv"])}


def _section_options():
    for section, (record, kind) in STEP_SECTIONS.items():
        for name in SCHEMA["$defs"][section]["properties"]:
            if name not in STUDY_KEYS and not (section == "prune" and name.startswith("ft_")):  # TrainConfig's
                yield pytest.param(section, name, id=f"{section}.{name}")


def test_every_config_key_of_a_step_section_is_a_declared_option():
    for section, name in ((p.values[0], p.values[1]) for p in _section_options()):
        assert name in {f.name for f in declared(STEP_SECTIONS[section][0])}, (section, name)


def _other_value(f: dataclasses.Field):
    choices = f.metadata["choices"]() if callable(f.metadata["choices"]) else f.metadata["choices"]
    if choices:
        return next(c for c in choices if c != f.default)
    return {"positive_int": 3, "nonneg_int": 3, "seed": 5, "fraction": 0.3}[f.metadata["type"]]


@pytest.mark.parametrize("section,name", [p for p in _section_options() if p.values[1] != "stream_points"])
def test_a_step_option_flows_from_its_section_to_the_step_and_into_the_key(section, name):
    """Set in the demo's section, the option reaches the step's command line, the step parses it back into its
    record (MatchOptions / EvalOptions), and the rows' directories change; unset, nothing moves (the pinned
    DIRECTORIES above). stream_points: ResNet20 only (the MLP's card refuses it; tests/test_faithfulness.py)."""
    record, kind = STEP_SECTIONS[section]
    f = next(f for f in declared(record) if f.name == name)
    value = _other_value(f)
    config = yaml.safe_load((REPO / "config.yaml").read_text(encoding="utf-8"))
    config["experiments"]["mnist1d"]["cells"][0][section][name] = value
    plan, base = plan_of(config), plan_of(REPO / "config.yaml")
    job = next(iter(plan.jobs[kind].values()))
    add, outputs = STEP_PARSERS[section]
    parser = argparse.ArgumentParser()
    add(parser)
    parsed = parser.parse_args(shlex.split(plan.args(job)) + outputs)
    options = record(**common.record_values(record, parsed))
    assert getattr(options, name) == value, plan.args(job)
    assert set(plan.jobs[kind]) - set(base.jobs[kind]), "the option is not in the rows' key"


def test_a_later_step_option_keeps_every_key_until_a_config_sets_it():
    """A field added to a step record is passed and hashed only where a config section sets it."""
    later = dataclasses.make_dataclass("Later", [("normalize", bool, option("scale A's units first", "boolean",
                                                                          False))], bases=(MatchOptions,),
                                       frozen=True)
    section = {"stat": "correlation", "batch_size": 500}
    assert section_key(later, section) == section_key(MatchOptions, section) == section
    assert section_argv(later, section) == section_argv(MatchOptions, section) == " --stat correlation --batch-size 500"
    assert section_argv(later, {**section, "normalize": True}).endswith(" --normalize True")
    assert section_key(MatchOptions, {"chunk": 64}) == {}  # speed and memory only: never in a key


def test_a_skipped_option_keeps_the_records_default_and_a_declaration_needs_type_or_choices():
    parser = argparse.ArgumentParser()
    common.add_record_args(parser, MatchOptions, skip=("chunk", "max_iter"))
    values = common.record_values(MatchOptions, parser.parse_args(["--batches", "0", "--method", "weight"]))
    assert "max_iter" not in values and MatchOptions(**values).max_iter == 100 and MatchOptions(**values).batches == 0
    loose = dataclasses.make_dataclass("Loose", [("size", int, option("no type, no choices", default=1))])
    with pytest.raises(TypeError, match="Loose.size: declare exactly one of type and choices"):
        common.add_record_args(argparse.ArgumentParser(), loose)
