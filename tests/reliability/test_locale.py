"""Every text file the project writes is UTF-8 whatever the locale (issue 31, item 5).

A non-UTF-8 locale is built with ``localedef`` into a private ``LOCPATH`` (no
root, nothing installed): ``en_US.ISO-8859-1``, where Python's default text
encoding is Latin-1, which has no '—' or 'σ'. The analysis steps, whose
tables and summaries hold both, used to end in ``UnicodeEncodeError`` with a
CSV written and its Markdown not.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from sparsebasin import reference

REPO = Path(__file__).resolve().parents[2]
LOCALE = "en_US.ISO-8859-1"


@pytest.fixture(scope="module")
def latin1_env(tmp_path_factory) -> dict:
    """The environment of a process whose locale encodes text as ISO-8859-1 (skips where localedef or the
    locale sources are missing: Debian's libc-bin and locales packages)."""
    localedef = shutil.which("localedef")
    if localedef is None or not Path("/usr/share/i18n/locales/en_US").exists():
        pytest.skip("needs localedef and the locale sources (apt-get install locales)")
    locpath = tmp_path_factory.mktemp("locales")
    res = subprocess.run([localedef, "-i", "en_US", "-f", "ISO-8859-1", str(locpath / LOCALE)], capture_output=True,
                         text=True, timeout=120)
    if not (locpath / LOCALE).exists():
        pytest.skip(f"localedef could not build {LOCALE}: {res.stderr.strip()[:200]}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LC_") and k not in ("LANG", "LANGUAGE")}
    env.update(LOCPATH=str(locpath), LC_ALL=LOCALE, LANG=LOCALE, PYTHONUTF8="0", PYTHONIOENCODING="",
               OMP_NUM_THREADS="1")
    probe = subprocess.run([sys.executable, "-c", "import locale; print(locale.getpreferredencoding(False))"],
                           env=env, capture_output=True, text=True, timeout=60)
    assert probe.stdout.strip().lower().replace("-", "").replace("_", "") in ("iso88591", "latin1"), probe
    return env


def _step(env: dict, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sparsebasin", *argv], env=env, capture_output=True, timeout=300)


def _runs_csv(tmp_path: Path) -> Path:
    """Published cells as runs at mean − std, mean, mean + std (three seeds), as the scorecard tests make them."""
    ref = reference.load("accuracy")
    ref = ref[ref["model"] == "vgg11"]
    rows = []
    for _, r in ref.iterrows():
        for seed, sign in enumerate((-1, 0, 1)):
            std = r["std"] if pd.notna(r["std"]) else 0.0
            rows.append({"experiment": "e", "dataset": r["dataset"], "model": r["model"], "width": r["width"],
                         "sparsity": r["sparsity"], "k": r["k"], "branch": r["branch"], "seed": seed,
                         r["metric"]: (r["mean"] + sign * std) / 100})
    runs = pd.DataFrame(rows).groupby(["experiment", "dataset", "model", "width", "sparsity", "k", "branch", "seed"],
                                      dropna=False).first().reset_index()
    path = tmp_path / "runs.csv"
    runs.to_csv(path, index=False)
    return path


def test_table_summary_and_scorecard_write_utf8_under_a_latin1_locale(latin1_env, tmp_path):
    runs = _runs_csv(tmp_path)
    out = tmp_path / "out"
    steps = {
        "scorecard": ["scorecard", "--runs", str(runs), "--out-csv", str(out / "scorecard.csv"),
                      "--out-md", str(out / "scorecard.md"), "--out-json", str(out / "scorecard.json")],
        "table": ["table", "--kind", "accuracy", "--table", str(runs), "--out-csv", str(out / "accuracy.csv"),
                  "--out-md", str(out / "accuracy.md")],
        "summary": ["summary", "--runs", str(runs), "--scorecard", str(out / "scorecard.json"),
                    "--out", str(out / "summary.md")],
    }
    for name, argv in steps.items():
        res = _step(latin1_env, *argv)
        err = res.stderr.decode("latin-1")
        assert res.returncode == 0, f"{name}: {err[-2000:]}"
        assert "Traceback" not in err and "UnicodeEncodeError" not in err, err[-2000:]
    written = sorted(p for p in out.iterdir() if p.is_file())
    assert {p.name for p in written} >= {"scorecard.csv", "scorecard.md", "scorecard.json", "accuracy.csv",
                                         "accuracy.md", "summary.md", "scorecard.csv.provenance.json"}
    text = {p.name: p.read_bytes().decode("utf-8") for p in written}  # every file is UTF-8
    assert any("σ" in t or "—" in t for t in text.values())  # and it holds what Latin-1 cannot
    json.loads(text["scorecard.json"])


def test_not_utf8_config_and_json_are_one_line(latin1_env, tmp_path):
    """The other half of the encoding contract: what the project reads is UTF-8 too, and a file that is not
    (a config saved as UTF-16) is one line naming it, in any locale."""
    config = (REPO / "config.yaml").read_text(encoding="utf-8")
    (tmp_path / "utf16.yaml").write_text(config, encoding="utf-16")
    (tmp_path / "runs.json").write_text('[{"out_dir": "x", "seed": 1}]', encoding="utf-16")
    for argv, name in ((["plan", "--configfile", str(tmp_path / "utf16.yaml")], "utf16.yaml"),
                       (["fused", "--runs", str(tmp_path / "runs.json"), "--model", "mlp", "--dataset", "mnist1d",
                         "--data-dir", str(tmp_path / "data"), "--device", "cpu"], "runs.json")):
        res = _step(latin1_env, *argv)
        lines = res.stderr.decode("latin-1").strip().splitlines()
        assert res.returncode == 2 and len(lines) == 1, lines
        assert name in lines[0] and "not UTF-8" in lines[0] and "UTF-16" in lines[0], lines[0]


@pytest.mark.slow
def test_the_workflow_runs_under_a_latin1_locale(latin1_env, tmp_path):
    """The default workflow, shrunk (one width, two seeds, one sweep sparsity, 6 epochs), end to end under Latin-1:
    every figure, table and summary is made, and every text output is UTF-8."""
    config = copy.deepcopy(yaml.safe_load((REPO / "config.yaml").read_text(encoding="utf-8")))
    for exp in config["experiments"].values():
        for cell in exp["cells"]:
            _shrink(cell)
    (tmp_path / "small.yaml").write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    env = {**latin1_env, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{latin1_env.get('PATH', '')}"}
    res = subprocess.run([str(Path(sys.executable).parent / "snakemake"), "-s", str(REPO / "Snakefile"), "-d",
                          str(tmp_path), "--cores", "2", "--configfile", str(tmp_path / "small.yaml")],
                         env=env, capture_output=True, timeout=1800)
    out = (res.stdout + res.stderr).decode("latin-1")
    assert res.returncode == 0, out[-4000:]
    assert "UnicodeEncodeError" not in out and "UnicodeDecodeError" not in out
    texts = [p for p in (tmp_path / "results").rglob("*") if p.is_file() and p.suffix in (".md", ".csv", ".json")]
    summaries = [p for p in texts if p.name == "summary.md"]
    assert summaries and len(texts) > 20
    for p in texts:
        p.read_bytes().decode("utf-8")  # raises on a file written in the locale's encoding
    assert any("—" in p.read_text(encoding="utf-8") or "σ" in p.read_text(encoding="utf-8") for p in texts)


def _shrink(cell: dict) -> None:
    """The default cell with one width and fewer seeds, sparsities and epochs: every study stays (the DAG is
    whole, every kind of text output is written)."""
    cell["seeds"] = [0, 1]
    width = max(cell["widths"])
    cell["widths"] = [width]
    for section in ("sweep", "lmc", "imp_barrier", "diversity", "early_matching"):
        if section in cell and "widths" in cell[section]:
            cell[section]["widths"] = [width]
    if "plane" in cell:
        cell["plane"]["width"] = width
    cell["dense"]["epochs"] = 6
    cell["prune"]["ft_epochs"] = 1
    for section in ("sweep", "lmc", "imp_barrier", "diversity", "early_matching"):
        if section in cell and "seeds" in cell[section]:
            cell[section]["seeds"] = [s for s in cell[section]["seeds"] if s in cell["seeds"]][:2]
    if "sweep" in cell:
        cell["sweep"]["sparsities"] = cell["sweep"]["sparsities"][-1:]
        cell["sweep"]["rewind"] = [k for k in cell["sweep"]["rewind"] if k < 6]
    if "early_matching" in cell:
        cell["early_matching"]["epochs"] = [e for e in cell["early_matching"]["epochs"] if e < 6] + [6]
