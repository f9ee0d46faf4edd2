"""plan.config in the library (torch-free): YAML duplicates, numbers, strict integers, defaults, labels."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sparsebasin.plan.config import ConfigError, check, check_yaml_files

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
DEFAULT = yaml.safe_load((REPO / "config.yaml").read_text())


def test_imports_no_torch():
    code = ("import sys; import sparsebasin.plan.config, sparsebasin.pruning.schedule; "
            "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if m.startswith('torch'))")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_default_and_paper_configs_pass_and_get_defaults():
    cfg = check(copy.deepcopy(DEFAULT), SCHEMA, [REPO / "config.yaml"])
    assert cfg["runtime_factor"] == 1.0 and cfg["experiments"]["mnist1d"]["metrics"] == ["test_acc"]
    for path in sorted((REPO / "config").glob("*.yaml")):
        check(yaml.safe_load(path.read_text()), SCHEMA, [path])


def test_duplicate_key_names_file_and_both_lines(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("device: cpu\nthreads: 1\nexperiments:\n  a: {}\ndevice: cuda\n")
    with pytest.raises(ConfigError, match=r"c.yaml line 5: duplicate key 'device' \(first at line 1\)"):
        check_yaml_files([p])


def test_anchors_and_aliases_are_not_duplicates(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("a: &x {lr: 1}\nb: *x\nc: {<<: *x, m: 2}\n")
    check_yaml_files([p])


@pytest.mark.parametrize("edit,match", [
    (lambda c: c.update(threads=2.0), r"threads = 2.0: must be an integer; write 2"),
    (lambda c: c.update(threads=True), r"threads = True"),
    (lambda c: c.update(device="auto"), r"device = 'auto': the workflow must know which jobs need a GPU; write "
                                        r"device: cuda .* or device: cpu"),
    (lambda c: c["experiments"]["mnist1d"]["cells"][0]["dense"].update(lr=float("inf")), r"dense.lr = inf: not a finite"),
    (lambda c: c["experiments"]["mnist1d"]["cells"][0]["sweep"].update(sparsities=[0.8, 0.9999999]),
     r"sparsities\[1\] = 0.9999999: its directory label would be S1"),
    (lambda c: c["experiments"]["mnist1d"]["cells"][0]["prune"].update(rate=0.005), r"prune.rate = 0.005: .* IMP rounds"),
    (lambda c: c["experiments"]["mnist1d"]["cells"][0].update(fused_widths=[1, 8]),
     r"fused_widths = \[1, 8\]: width 8 is not one of the cell's widths \[1, 2, 4\]"),
    # a TrainConfig that would not resolve: one line naming the key before any job, not a traceback (the
    # preset, and the rules between fields at the shortest run of each section)
    (lambda c: c["experiments"]["mnist1d"]["cells"][0]["prune"].update(ft_preset="nope"),
     r"cells\[0\].prune.ft_preset = 'nope' is not a preset; choose one of dense, sparse"),
    (lambda c: c["experiments"]["mnist1d"]["cells"][0]["dense"].update(preset="nope"),
     r"cells\[0\].dense.preset = 'nope' is not a preset"),
    (lambda c: c["experiments"]["mnist1d"]["cells"][0]["dense"].update(warmup_epochs=25),
     r"cells\[0\].dense: warmup_epochs must be between 0 and epochs \(20\) \(got 25\)"),
    (lambda c: c["experiments"]["mnist1d"]["cells"][0]["prune"].update(ft_nesterov=True),
     r"cells\[0\].prune \(the ft_ keys: IMP's fine-tuning\): nesterov needs momentum > 0"),
    (lambda c: c["experiments"]["mnist1d"]["cells"][0]["sparse"].update(warmup_epochs=19),
     r"cells\[0\].sparse \(its shortest runs: 16 epochs = dense.epochs 20 - rewind point 4\): warmup_epochs must "
     r"be between 0 and epochs \(16\)"),
])
def test_refused(edit, match):
    cfg = copy.deepcopy(DEFAULT)
    edit(cfg)
    with pytest.raises(ConfigError, match=match):
        check(cfg, SCHEMA)
