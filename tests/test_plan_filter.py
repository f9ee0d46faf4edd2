"""`sparsebasin plan` filters: a filter that cannot match is refused in one line that lists what exists.

An empty `plan --targets` would turn `snakemake $(python -m sparsebasin plan ... --targets)` into the whole
workflow, so every way of matching nothing (a value no run has, a misspelled tag or kind, an impossible
combination) exits 2; numbers compare as numbers (sparsity=.95 is 0.95).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from sparsebasin.cli import main

REPO = Path(__file__).resolve().parents[1]


def plan(capsys, *args):
    rc = main(["plan", "--configfile", str(REPO / "config.yaml"), *args])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize("args, message", [
    (["--where", "width=9"], "no run has width=9 (width: 1, 2, 4)"),
    (["--where", "sparsity=95"], "no run has sparsity=95 (sparsity: 0.8, 0.95)"),
    (["--where", "branchh=permuted"], "no run has a tag 'branchh' (tags: b_seed, branch, dataset,"),
    (["--kind", "sparsee"], "--kind sparsee: no such kind of job (kinds: dense, prune, match, sparse,"),
    (["--experiment", "mnist"], "no such experiment in the config (experiments: mnist1d)"),
    (["--kind", "dense", "--where", "sparsity=0.95"], "no dense job has a tag 'sparsity' (tags: branch,"),
    (["--kind", "sparse", "--where", "branch=dense"], "no sparse job has branch=dense (branch: lth, naive, permuted, random, signs)"),
    (["--kind", "sparse", "--where", "studies=early_matching", "--where", "sparsity=0.8"],
     "no sparse job has all of these at once"),
])
@pytest.mark.parametrize("targets", [[], ["--targets"]])
def test_a_filter_that_matches_nothing_is_refused_with_what_exists(capsys, args, message, targets):
    rc, out, err = plan(capsys, *args, *targets)
    assert rc == 2 and out == "", (rc, out, err)
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err, err


def test_numbers_compare_as_numbers(capsys):
    rc, dotted, err = plan(capsys, "--kind", "sparse", "--where", "sparsity=.95", "--where", "width=4.0", "--targets")
    assert rc == 0, err
    rc, plain, err = plan(capsys, "--kind", "sparse", "--where", "sparsity=0.95", "--where", "width=4", "--targets")
    assert rc == 0, err
    assert dotted == plain and len(plain.splitlines()) >= 12  # 2 seeds x 2 rewind points x 3 branches (+ Table 1)
    assert all("/S0.95/" in line for line in plain.splitlines())


def test_list_tags_match_one_member(capsys):
    """studies/experiments list every user of a run: --where studies=lmc matches "lmc,sweep" too."""
    rc, out, err = plan(capsys, "--kind", "dense", "--where", "studies=lmc")
    assert rc == 0, err
    rows = out.splitlines()[1:]
    assert len(rows) == 6, rows  # widths 1, 2, 4 x A, B
    assert all("lmc" in r.split("\t")[2].split(",") for r in rows) and any(r.split("\t")[2] != "lmc" for r in rows)


def test_the_readme_pairs_configfile_on_both_sides_and_the_command_plans_one_run(cli_env):
    """The README's paper-config example: the same --configfile for plan and snakemake, one target, few jobs."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    commands = [c for c in re.findall(r"^(snakemake .*\$\(python -m sparsebasin plan .*\))$", readme, flags=re.M)
                if "--configfile" in c]
    assert commands, "README has no `snakemake ... $(python -m sparsebasin plan --configfile ...)` example"
    command = commands[0]
    configs = re.findall(r"--configfile[= ](\S+)", command)
    assert len(configs) == 2 and configs[0] == configs[1] and configs[0].startswith("config/"), command
    res = subprocess.run(["bash", "-c", command.replace("snakemake ", "snakemake -n --quiet=rules ", 1)],
                         cwd=REPO, env=cli_env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    from snakemake_output import job_stats
    from workflow_plan import families

    stats = families(job_stats(res.stdout + res.stderr))
    assert stats.get("sparse_fused", 0) + stats.get("sparse", 0) == 1 and sum(stats.values()) < 20, stats


def test_plan_to_a_closed_pipe_is_quiet():
    """`plan | head -1` ends without an error line (the reader went away, nothing failed)."""
    res = subprocess.run(f"{sys.executable} -m sparsebasin plan --configfile {REPO / 'config.yaml'} | head -1",
                         shell=True, capture_output=True, text=True, timeout=120)
    assert res.stdout.startswith("kind\t") and res.stderr == "", res.stderr
