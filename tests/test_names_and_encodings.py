"""Names the project builds stay within the file system's limit for any legal output name; a data error names
the file that is wrong; a config or JSON file that is not UTF-8 text is one line naming it."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from sparsebasin import io
from sparsebasin.cli import main
from sparsebasin.errors import UserError
from sparsebasin.plan.config import ConfigError, check_yaml_files

REPO = Path(__file__).resolve().parents[1]


def _limit(d: Path) -> int:
    return os.pathconf(d, "PC_NAME_MAX")


@pytest.mark.parametrize("spare", [0, 3, 20])
def test_an_atomic_write_takes_any_legal_name(tmp_path, spare):
    name = "r" * (_limit(tmp_path) - spare - 4) + ".csv"
    io.write_text(tmp_path / name, "a,b\n1,2\n")
    assert (tmp_path / name).read_text(encoding="utf-8") == "a,b\n1,2\n"
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temporary left


def test_fitted_names_stay_distinct_and_within_the_limit(tmp_path):
    limit = _limit(tmp_path)
    a, b = "x" * (limit - 1) + "a", "x" * (limit - 1) + "b"
    fa, fb = io.fitted_name(f".{a}.", tmp_path, reserve=12), io.fitted_name(f".{b}.", tmp_path, reserve=12)
    assert fa != fb and len(fa.encode()) <= limit - 12 and len(fb.encode()) <= limit - 12
    assert io.fitted_name(".short.", tmp_path, reserve=12) == ".short."
    long_utf8 = "é" * (limit // 2)  # 2 bytes each: the limit is in bytes
    assert len(io.fitted_name(f".{long_utf8}.", tmp_path, reserve=12).encode()) <= limit - 12
    scratch = io.scratch_path(tmp_path / ("p" * limit), ".points.json")
    assert len(scratch.name.encode()) <= limit and scratch.name.startswith(".ppp")
    scratch.write_text("{}", encoding="utf-8")  # creatable


def test_an_output_whose_sidecar_cannot_exist_is_refused_before_any_work(tmp_path, capsys):
    """A CSV's provenance sidecar adds 16 bytes to its name: a legal CSV name can make an illegal sidecar."""
    import json

    (tmp_path / "r.json").write_text(json.dumps({"test_acc": 0.5, "tags": {"branch": "dense"}}), encoding="utf-8")
    out = tmp_path / ("c" * (_limit(tmp_path) - 8) + ".csv")
    assert main(["collect", "--inputs", str(tmp_path / "r.json"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--out (its provenance sidecar)" in err[0] and "choose a shorter name" in err[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]


def test_a_bad_label_names_the_batch_it_is_in(tmp_path):
    from sparsebasin.data import cifar

    cifar.write_synthetic("cifar10", tmp_path, 50, 10)
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_4"
    with open(batch, "rb") as fh:
        obj = pickle.load(fh)
    obj[b"labels"][3] = 10
    with open(batch, "wb") as fh:
        pickle.dump(obj, fh)
    with pytest.raises(UserError) as exc:
        cifar.load("cifar10", tmp_path, "train")
    assert "data_batch_4" in str(exc.value) and "data_batch_1" not in str(exc.value)
    assert "label 10 outside [0, 10)" in str(exc.value)


@pytest.mark.parametrize("encoding,words", [("utf-16", ["UTF-16"]), ("latin-1", ["byte 0xe9"])])
def test_a_config_that_is_not_utf8_is_one_line_naming_it(tmp_path, encoding, words):
    text = (REPO / "config.yaml").read_text(encoding="utf-8") + "# café\n"
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding=encoding)
    with pytest.raises(ConfigError) as exc:
        check_yaml_files([path])
    assert str(path) in str(exc.value) and "not UTF-8" in str(exc.value)
    assert all(w in str(exc.value) for w in words), str(exc.value)


def test_a_json_input_that_is_not_utf8_is_one_line(tmp_path):
    path = tmp_path / "runs.json"
    path.write_text('[{"out_dir": "x"}]', encoding="utf-16")
    with pytest.raises(UserError) as exc:
        io.read_json(path)
    assert str(path) in str(exc.value) and "UTF-16" in str(exc.value)


@pytest.mark.slow
def test_the_workflow_says_its_default_config_is_not_utf8(tmp_path):
    """The default config.yaml, saved as UTF-16 by an editor: one line (the Snakefile reads it first).

    A config given with --configfile is read by Snakemake itself before any workflow code runs
    (snakemake.settings.types.ConfigSettings); that traceback is Snakemake's to shorten."""
    repo = tmp_path / "repo"
    repo.mkdir()
    for name in ("Snakefile", "workflow", "src", "slurm", "config.yaml"):
        src = REPO / name
        if src.is_dir():
            os.symlink(src, repo / name)
        else:
            (repo / name).write_bytes(src.read_bytes())
    (repo / "config.yaml").write_text((REPO / "config.yaml").read_text(encoding="utf-8"), encoding="utf-16")
    res = subprocess.run([str(Path(sys.executable).parent / "snakemake"), "-s", str(repo / "Snakefile"), "-d",
                          str(tmp_path), "-n", "--cores", "1"], capture_output=True, text=True, timeout=300)
    lines = [line for line in (res.stdout + res.stderr).splitlines() if line.strip()]
    assert res.returncode != 0 and len(lines) == 1, lines[-20:]
    assert lines[0].startswith("config error: ") and "config.yaml is not UTF-8 text" in lines[0] and "UTF-16" in lines[0]
