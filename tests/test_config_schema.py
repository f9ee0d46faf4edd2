"""Config validation: bad configs stop the workflow with one line naming the key.

Each case runs `snakemake -n --configfile bad.yaml` in a subprocess (working
directory a tmp dir, so nothing is written to the repository).
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
DEFAULT = yaml.safe_load((REPO / "config.yaml").read_text())
CELL = ("experiments", "mnist1d", "cells", 0)


def run_with(tmp_path, config):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run(
        [str(VENV_BIN / "snakemake"), "-s", str(REPO / "Snakefile"), "-n", f"--configfile={path}",
         "--directory", str(tmp_path)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )


def edited(*path_and_value):
    """A copy of the default config with config[path...] = value (value None deletes)."""
    config = copy.deepcopy(DEFAULT)
    *path, value = path_and_value
    node = config
    for key in path[:-1]:
        node = node[key]
    if value is None:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return config


BAD = {
    "unknown_top_key": (edited("outdir", "x"), ["unknown key 'outdir'", "allowed at the top level"]),
    "unknown_nested_key": (edited(*CELL, "dense", "lrr", 0.1),
                           ["unknown key 'experiments.mnist1d.cells[0].dense.lrr'", "remove it or fix its spelling"]),
    "wrong_type": (edited(*CELL, "seeds", "0,1"), ["experiments.mnist1d.cells[0].seeds", "is not of type 'array'"]),
    "sparsity_zero": (edited(*CELL, "sweep", "sparsities", [0, 0.9]),
                      ["experiments.mnist1d.cells[0].sweep.sparsities[0] = 0", "strictly between 0 and 1"]),
    "sparsity_one": (edited(*CELL, "sweep", "sparsities", [0.8, 1.0]),
                     ["experiments.mnist1d.cells[0].sweep.sparsities[1] = 1.0", "strictly between 0 and 1"]),
    "sparsity_negative": (edited(*CELL, "diversity", "sparsity", -0.5),
                          ["experiments.mnist1d.cells[0].diversity.sparsity = -0.5", "strictly between 0 and 1"]),
    "rewind_not_below_epochs": (edited(*CELL, "sweep", "rewind", [0, 20]),
                                ["experiments.mnist1d.cells[0].sweep.rewind contains 20", "< dense.epochs (20)"]),
    "plane_k_not_below_epochs": (edited(*CELL, "plane", "k", 25),
                                 ["experiments.mnist1d.cells[0].plane.k contains 25", "< dense.epochs (20)"]),
    "early_epoch_beyond_training": (edited(*CELL, "early_matching", "epochs", [5, 30]),
                                    ["experiments.mnist1d.cells[0].early_matching.epochs contains 30", "<= dense.epochs"]),
    "width_zero": (edited(*CELL, "widths", [0, 1]),
                   ["experiments.mnist1d.cells[0].widths[0] = 0", "positive integer"]),
    "unknown_model": (edited(*CELL, "model", "mlpp"), ["experiments.mnist1d.cells[0].model = 'mlpp'", "resnet20"]),
    "unknown_dataset": (edited(*CELL, "dataset", "mnist"), ["experiments.mnist1d.cells[0].dataset = 'mnist'", "cifar10"]),
    "missing_required": (edited(*CELL, "dense", "lr", None),
                         ["experiments.mnist1d.cells[0].dense is missing the required key 'lr'"]),
    "section_width_not_in_cell": (edited(*CELL, "sweep", "widths", [1, 8]),
                                  ["experiments.mnist1d.cells[0].sweep.widths lists width 8"]),
    "plane_seed_not_in_cell": (edited(*CELL, "plane", "seed", 7), ["experiments.mnist1d.cells[0].plane.seed = 7"]),
    "bad_experiment_name": ({**DEFAULT, "experiments": {"my-exp": DEFAULT["experiments"]["mnist1d"]}},
                            ["experiments: name 'my-exp' is not allowed"]),
    "model_args_only_for_mlp": (edited(*CELL, "model", "resnet20"), ["model_args.depth: resnet20 takes no such argument", "remove model_args"]),
    "fused_wrong_type": (edited("fused", "yes"), ["fused = 'yes'", "is not of type 'boolean'"]),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_config_is_rejected_with_one_clear_line(tmp_path, case):
    config, expected = BAD[case]
    res = run_with(tmp_path, config)
    assert res.returncode != 0
    lines = [line for line in (res.stdout + res.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("config error: "), lines
    for text in expected:
        assert text in lines[0], (text, lines[0])


def test_resnet50_width_must_be_one(tmp_path):
    config = yaml.safe_load((REPO / "config" / "imagenet_resnet50.yaml").read_text())
    config["experiments"]["imagenet_resnet50"]["cells"][0]["widths"] = [1, 2]
    res = run_with(tmp_path, config)
    assert res.returncode != 0
    assert "resnet50 supports width 1 only" in res.stderr


def test_names_come_from_the_registry_not_the_schema():
    """The schema names no architecture or dataset: the modules' cards are the one list (sparsebasin.registry)."""
    text = (REPO / "workflow" / "schemas" / "config.schema.yaml").read_text()
    from sparsebasin import registry

    for name in (*registry.model_names(), *registry.dataset_names()):
        assert name not in text, name


def test_all_config_is_the_union_of_the_paper_configs():
    sys.path.insert(0, str(REPO / "workflow" / "scripts"))
    try:
        from make_all_config import BEYOND, PARTS, union
    finally:
        sys.path.pop(0)
    assert yaml.safe_load((REPO / "config" / "all.yaml").read_text()) == union()
    on_disk = {p.stem for p in (REPO / "config").glob("*.yaml")} - {"all"}
    assert on_disk == set(PARTS) | set(BEYOND)


def test_paper_grid_is_data():
    """PROTOCOL.md's grid, read back from the configs."""
    load = lambda name: yaml.safe_load((REPO / "config" / f"{name}.yaml").read_text())["experiments"]  # noqa: E731
    c10 = load("cifar10_resnet20")["cifar10_resnet20"]["cells"]
    assert [c["widths"] for c in c10] == [[1, 4], [8, 16]]
    assert c10[0]["sweep"]["rewind"] == [0, 5, 10, 15, 20, 25, 50, 75, 100]
    assert c10[1]["sweep"]["rewind"] == [0, 10, 25, 50, 100]
    for c in c10:
        assert c["sweep"]["sparsities"] == [0.8, 0.9, 0.95, 0.97] and c["seeds"] == [0, 1, 2]
        assert c["dense"]["lr"] == 0.08 and c["sparse"]["lr"] == 0.02 and c["dense"]["epochs"] == 200
        assert c["prune"]["ft_epochs"] == 50 and c["prune"]["ft_lr"] == 0.01 and c["prune"]["rate"] == 0.2
    c100 = load("cifar100_resnet20")["cifar100_resnet20"]["cells"][0]
    assert c100["widths"] == [1, 4, 8, 16] and c100["sweep"]["rewind"] == [0, 10, 25, 50, 100]
    vgg = load("cifar10_vgg11")["cifar10_vgg11"]["cells"][0]
    assert vgg["sweep"] == {"sparsities": [0.8, 0.9], "rewind": [0, 5, 10, 15, 20, 25, 50]}
    inet = load("imagenet_resnet50")["imagenet_resnet50"]["cells"][0]
    assert inet["sweep"] == {"sparsities": [0.8, 0.9, 0.95], "rewind": [10, 25, 50]}
    assert (inet["dense"]["batch_size"], inet["dense"]["epochs"], inet["dense"]["lr"], inet["dense"]["warmup_epochs"],
            inet["dense"]["weight_decay"]) == (1024, 80, 0.4, 5, 1e-4)
    assert (inet["prune"]["ft_epochs"], inet["prune"]["ft_lr"], inet["sparse"]["lr"]) == (20, 0.04, 0.4)
    div = load("diversity")["diversity"]["cells"]
    assert [(c["dataset"], c["widths"], len(c["seeds"]), c["diversity"]["sparsity"]) for c in div] == [
        ("cifar10", [1], 5, 0.9), ("cifar100", [4], 5, 0.9)]
    early = load("early_matching")["early_matching"]["cells"][0]
    assert early["early_matching"]["epochs"] == [5, 20, 50, 100, 200] and early["early_matching"]["k"] == 20
