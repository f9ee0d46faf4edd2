"""Bad workflow configs: ``snakemake -n --configfile bad.yaml`` stops with one line naming the key.

Each case is the tiny valid config of the workflow tests with one mistake
(most schema cases live in tests/test_config_schema.py; see CASES). The dry
runs are independent, so they run two at a time (each is a Snakemake start).
Asserted per case: non-zero exit, exactly one non-empty line of output,
``config error: <key path> ...`` naming the key and what to do, and no file
created in the working directory.
"""

from __future__ import annotations

import copy
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
import yaml
from relutil import REPO, WORKFLOW_CONFIG, diff_snapshots, env_with_venv, snapshot

# name -> (edit of the config, substrings of the one line, action word).
# tests/test_config_schema.py (the workflow's own suite) already covers unknown nested keys, wrong
# types, sparsity 0 / 1 / negative, rewind >= epochs, width 0, unknown model/dataset, missing keys
# and the cross-field rules; not repeated here. These add the keys it does not try and check
# that a refused config writes nothing.
CASES = {
    "unknown_top_level_key": (lambda c: c.update(thread=1), ["'thread'", "allowed at the top level"], "remove"),
    "threads_zero": (lambda c: c.update(threads=0), ["threads = 0"], "fix"),
    "runtime_factor_negative": (lambda c: c.update(runtime_factor=-1), ["runtime_factor = -1"], "fix"),
    "device_typo": (lambda c: c.update(device="gpu"), ["device = 'gpu'", "cuda"], "fix"),
    # what JSON Schema lets through (issue: nothing lost, class 7)
    "epochs_float": (lambda c: _cell(c)["dense"].update(epochs=2.0),
                     ["experiments.rel.cells[0].dense.epochs = 2.0", "must be an integer"], "write 2"),
    "width_float": (lambda c: _cell(c).update(widths=[1.0]), ["experiments.rel.cells[0].widths[0] = 1.0"], "write 1"),
    "ft_epochs_float": (lambda c: _cell(c)["prune"].update(ft_epochs=6.5),
                        ["experiments.rel.cells[0].prune.ft_epochs = 6.5", "must be an integer"], "fix"),
    "lr_infinite": (lambda c: _cell(c)["dense"].update(lr=float("inf")),
                    ["experiments.rel.cells[0].dense.lr = inf", "not a finite number"], "fix"),
    "momentum_nan": (lambda c: _cell(c)["dense"].update(momentum=float("nan")),
                     ["experiments.rel.cells[0].dense.momentum = nan", "not a finite number"], "fix"),
    "sparsity_label_degenerates": (lambda c: _cell(c)["sweep"].update(sparsities=[0.5, 0.9999999]),
                                   ["sweep.sparsities[1] = 0.9999999", "S1"], "fix"),
    "sparsity_labels_collide": (lambda c: _cell(c)["sweep"].update(sparsities=[0.5, 0.500000001]),
                                ["sweep.sparsities[1] = 0.500000001", "S0.5", "names another sparsity"], "round"),
    "imp_rate_absurdly_small": (lambda c: _cell(c)["prune"].update(rate=0.001),
                                ["experiments.rel.cells[0].prune.rate = 0.001", "IMP rounds"], "raise the rate"),
    "duplicate_top_level_key": (lambda c: yaml.safe_dump(c, sort_keys=False) + "device: cuda\n",
                                ["duplicate key 'device'", "bad.yaml line", "first at line 1"], "remove"),
    "duplicate_nested_key": (lambda c: yaml.safe_dump(c, sort_keys=False).replace(
                                 "      sparse:\n", "      sparse:\n        lr: 0.5\n", 1),
                             ["duplicate key 'lr'", "bad.yaml line"], "remove"),
}


def _cell(c):
    return c["experiments"]["rel"]["cells"][0]


def dry_run(name: str, work) -> tuple[subprocess.CompletedProcess, list[str]]:
    edit, _, _ = CASES[name]
    cfg = copy.deepcopy(WORKFLOW_CONFIG)
    text = edit(cfg)  # an edit returns the file's text when a dict cannot express the mistake
    work.mkdir()
    (work / "bad.yaml").write_text(text if isinstance(text, str) else yaml.safe_dump(cfg, sort_keys=False))
    before = snapshot(work)
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(work),
                           "--configfile", str(work / "bad.yaml"), "-n", "--cores", "1"],
                          env=env_with_venv(), capture_output=True, text=True, timeout=300)
    return proc, diff_snapshots(before, snapshot(work))


@pytest.fixture(scope="module")
def dry_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("badcfg")
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {name: pool.submit(dry_run, name, root / name) for name in CASES}
        return {name: f.result() for name, f in futures.items()}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_config_is_one_line_naming_the_key(name, dry_runs):
    proc, diff = dry_runs[name]
    _, names, action = CASES[name]
    lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
    assert proc.returncode != 0, lines
    assert len(lines) == 1, lines
    line = lines[0]
    assert line.startswith("config error: "), line
    for n in names:
        assert n in line, f"{n!r} not in: {line}"
    assert action in line, f"no {action!r} in: {line}"
    assert diff == [], diff
    print(f"\n{name}: {line}")


def test_yaml_syntax_error_is_refused_without_output(tmp_path):
    """Snakemake parses --configfile before the workflow's own checks run, so this message is
    Snakemake's (two lines, the file not named); asserted: refused, nothing written."""
    (tmp_path / "bad.yaml").write_text("device: cpu\nexperiments: {rel: [\n")
    before = snapshot(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path),
                           "--configfile", str(tmp_path / "bad.yaml"), "-n", "--cores", "1"],
                          env=env_with_venv(), capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "not valid JSON or YAML" in out, out
    assert "Traceback" not in out
    assert diff_snapshots(before, snapshot(tmp_path)) == []
