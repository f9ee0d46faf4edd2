"""The built-in default config through the whole DAG (`snakemake --cores 2`), then
partial reruns: after changing one config value only what depends on it reruns.

One real run (module fixture, in a tmp working directory) serves every test here.
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from html import unescape as html_unescape
from pathlib import Path

import pytest
import yaml
from browser import dump_dom
from default_run import HEADLINE
from snakemake_output import job_stats
from workflow_plan import families, find

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
DEFAULT = yaml.safe_load((REPO / "config.yaml").read_text())

pytestmark = pytest.mark.slow


def snakemake(args, workdir, timeout=1800):
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("OMP_NUM_THREADS", "1")
    cmd = [str(VENV_BIN / "snakemake"), "-s", str(REPO / "Snakefile"), "--directory", str(workdir), *args]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def finished(default_run):
    """The default config run end to end once per session, as `make run` runs it (tests/default_run.py)."""
    return default_run.workdir


def _targets():
    exp = "results/mnist1d"
    figures = ["accuracy_vs_rewind", "accuracy_vs_sparsity", "lmc_width", "imp_barrier", "plane", "baselines"]
    tables = ["accuracy", "diversity", "early_matching", "lmc", "scorecard", "baselines"]
    return ([f"{exp}/figures/{f}.{ext}" for f in figures for ext in ("pdf", "png")]
            + [f"{exp}/tables/{t}.{ext}" for t in tables for ext in ("csv", "md")] + [f"{exp}/summary.md"])


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_every_figure_table_and_summary_exists(finished):
    for target in _targets():
        path = finished / target
        assert path.is_file() and path.stat().st_size > 0, target
    assert (finished / "results/mnist1d/figures/plane.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_tidy_tables_carry_the_tags(finished):
    tidy = finished / "results/mnist1d/tidy"
    runs = _rows(tidy / "runs.csv")
    for col in ("experiment", "dataset", "model", "width", "seed", "sparsity", "k", "branch", "test_acc"):
        assert col in runs[0], col
    branches = {r["branch"] for r in runs}
    assert branches == {"dense", "imp", "lth", "naive", "permuted", "random", "signs"}
    sparse = [r for r in runs if r["branch"] in ("lth", "naive", "permuted", "random", "signs")]
    # sweep: widths 1, 4 x seeds 0, 1 x sparsities 0.8, 0.95 x rewind points 0, 4 x 5 branches
    assert len(sparse) == 80
    assert {r["experiment"] for r in runs} == {"mnist1d"}
    early = _rows(tidy / "early.csv")
    assert {float(r["match_epoch"]) for r in early if r["branch"] == "permuted"} == {5, 20}
    ensembles = _rows(tidy / "ensembles.csv")
    assert sorted(r["group"] for r in ensembles) == ["dense", "imp", "lth", "naive", "permuted"]
    assert all(float(r["n"]) == 3 for r in ensembles)
    imp = _rows(tidy / "imp_curves.csv")
    assert {float(r["round"]) for r in imp} == {1, 2, 3, 5, 6, 7}  # the rounds on the way to 0.95


def test_rewind_checkpoints_and_rounds_are_kept(finished):
    for net in ("A", "B"):
        dense = finished / find("dense", width=4, seed=0, net=net)
        for k in (0, 4, 5):
            assert (dense / f"ckpt/epoch{k}.pt").is_file()
    prune = finished / find("prune", width=4, seed=0)
    assert (prune / "rounds.json").is_file() and (prune / "rounds/round7.pt").is_file()


def test_nothing_left_to_do(finished):
    res = snakemake(["-n"], finished)
    assert res.returncode == 0, res.stderr
    assert "Nothing to be done" in res.stdout + res.stderr, res.stdout[-3000:]


def _with(tmp_path, section, key, value):
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["experiments"]["mnist1d"]["cells"][0][section][key] = value
    path = tmp_path / "changed.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_changing_the_sparse_lr_reruns_only_what_depends_on_it(finished, tmp_path):
    changed = _with(tmp_path, "sparse", "lr", 0.04)
    res = snakemake(["-n", "--quiet=rules", f"--configfile={changed}"], finished)
    assert res.returncode == 0, res.stderr
    stats = families(job_stats(res.stdout + res.stderr))
    assert stats == {
        "sparse_fused": 4,  # widths 1, 4 x rewind points 0, 4
        "plane": 1, "ensemble": 3,  # lth, naive, permuted groups (dense and imp do not change)
        "collect": 4,  # runs, early, ensembles, plane (not matches, lmc, imp curves)
        "figure_accuracy_vs_rewind": 1, "figure_accuracy_vs_sparsity": 1, "figure_plane": 1,
        "figure_baselines": 1, "table_baselines": 1,  # the controls' comparison reads the runs too
        "table_accuracy": 1, "table_diversity": 1, "table_early_matching": 1, "scorecard": 1, "summary": 1, "all": 1,
    }


def test_changing_the_ft_lr_reruns_pruning_and_below_but_not_dense(finished, tmp_path):
    changed = _with(tmp_path, "prune", "ft_lr", 0.03)
    res = snakemake(["-n", "--quiet=rules", f"--configfile={changed}"], finished)
    assert res.returncode == 0, res.stderr
    stats = families(job_stats(res.stdout + res.stderr))
    assert stats["prune"] == 5 and stats["imp_barrier"] == 6
    for rule in ("prepare", "match", "lmc", "figure_lmc_width", "table_lmc", "dense_fused"):
        assert rule not in stats, rule


def test_changing_the_dense_lr_reruns_everything_but_the_data(finished, tmp_path):
    changed = _with(tmp_path, "dense", "lr", 0.2)
    res = snakemake(["-n", "--quiet=rules", f"--configfile={changed}"], finished)
    assert res.returncode == 0, res.stderr
    stats = job_stats(res.stdout + res.stderr)
    assert "prepare" not in stats
    every = job_stats((lambda r: r.stdout + r.stderr)(snakemake(["-n", "-F", "--quiet=rules"], finished)))
    assert sum(every.values()) == 59  # the default DAG (docs/workflow.md)
    assert sum(stats.values()) == sum(every.values()) - 1  # every job of the default DAG except prepare


def test_html_report_has_every_figure_and_table(finished):
    res = snakemake(["--report", "report.html"], finished)
    assert res.returncode == 0, res.stderr[-3000:]
    html = (finished / "report.html").read_text(errors="replace")
    for name in ("accuracy_vs_rewind.png", "lmc_width.pdf", "plane.png", "diversity.md", "early_matching.csv",
                 "scorecard.md", "summary.md"):
        assert name in html, name
    # the scorecard and summary come first: the report lists subcategories in name order
    categories = json.loads(re.search(r"categories = (\{.*?\});", html).group(1))
    subs = sorted(categories["mnist1d"])
    assert subs[0] == "1. scorecard" and {"tables/scorecard.md", "summary.md"} <= {
        p.split("results/mnist1d/")[-1] for p in categories["mnist1d"][subs[0]]}, categories


def test_summary_opens_with_the_scorecard_headline(finished):
    text = (finished / "results/mnist1d/summary.md").read_text().splitlines()
    first = next(line for line in text if line.strip() and not line.startswith("<!--"))
    assert re.match(r"\*\*Reproduction:\*\* " + HEADLINE.pattern, first), first
    card = json.loads((finished / "results/mnist1d/tables/scorecard.json").read_text())
    assert card["published"] == 0 and card["counts"]["no_reference"] > 0 and card["headline"] in first

FIGURES = ("accuracy_vs_rewind", "accuracy_vs_sparsity", "baselines", "imp_barrier", "lmc_width", "plane")


def test_report_opens_in_headless_chromium(finished, tmp_path):
    """The self-contained report renders in a real browser, and every figure in it decodes."""
    res = snakemake(["--report", "report.html"], finished)
    assert res.returncode == 0, res.stderr[-3000:]
    report = finished / "report.html"

    # The report's app ran: its navigation is in the rendered DOM (not just in its scripts).
    dom = dump_dom(report, tmp_path / "profile")
    rendered = re.sub(r"<(script|style)\b.*?</\1>", " ", dom, flags=re.S)
    rendered = " ".join(re.sub(r"<[^>]+>", " ", rendered).split())  # the page's visible text
    for label in ("Workflow Statistics", "Results"):
        assert label in rendered, f"{label!r} not rendered; the report's scripts did not run"

    # Every PNG figure the report embeds loads as an image with its real size.
    html = report.read_text(errors="replace")
    uris = dict(re.findall(r"(data:image/png;charset=utf8;filename=([^;]+);base64,[A-Za-z0-9+/=]+)", html))
    names = {name: uri for uri, name in uris.items()}
    assert sorted(n[:-4] for n in names) == sorted(FIGURES), sorted(names)
    imgs = "".join(f'<img data-name="{n}" src="{u}">' for n, u in names.items())
    probe = tmp_path / "figures.html"
    probe.write_text(
        f"<html><body>{imgs}<script>window.addEventListener('load', () => {{"
        "const p = document.createElement('pre'); p.id = 'sizes';"
        "p.textContent = JSON.stringify([...document.images].map(i => [i.dataset.name, i.naturalWidth, i.naturalHeight]));"
        "document.body.appendChild(p); });</script></body></html>"
    )
    found = re.search(r'<pre id="sizes">(.*?)</pre>', dump_dom(probe, tmp_path / "profile"))
    assert found, "the figure probe page did not finish loading"
    sizes = {name: (w, h) for name, w, h in json.loads(html_unescape(found.group(1)))}
    for name, (w, h) in sizes.items():
        assert w >= 300 and h >= 200, f"{name} did not decode in the browser ({w}x{h})"
