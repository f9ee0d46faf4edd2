"""collect: result files -> one tidy table with tags as typed columns."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from sparsebasin import cli
from sparsebasin.analysis import outputs, tidy
from sparsebasin.errors import UserError


def _write(path, obj):
    path.write_text(json.dumps(obj))
    return path


def _result(tmp_path, name, branch, seed, sparsity="0.9", k="10", acc=0.5):
    tags = {"experiment": "e", "dataset": "cifar10", "model": "resnet20", "width": "4", "seed": str(seed), "branch": branch}
    if branch != "dense":
        tags.update(sparsity=sparsity, k=k)
    return _write(tmp_path / f"{name}.json", {
        "run": name, "tags": tags, "test_acc": acc, "test_top5": 0.9, "test_loss": 1.0, "train_loss": 0.5,
        "epochs": 3, "density": None if branch == "dense" else 0.1, "provenance": {"argv": ["x"]},
    })


def test_result_json_rows_have_tags_as_numeric_columns(tmp_path):
    paths = [_result(tmp_path, "d", "dense", 0, acc=0.9), _result(tmp_path, "p", "permuted", 1, acc=0.7)]
    table = tidy.collect(paths)
    assert list(table.columns[:8]) == ["experiment", "dataset", "model", "width", "seed", "sparsity", "k", "branch"]
    assert "provenance" not in table.columns and "source" in table.columns
    assert table["width"].tolist() == [4.0, 4.0]
    assert table.loc[table["branch"] == "permuted", "sparsity"].item() == 0.9
    assert pd.isna(table.loc[table["branch"] == "dense", "k"].item())
    assert table.loc[table["branch"] == "dense", "test_acc"].item() == 0.9


def test_list_of_records_becomes_one_row_each(tmp_path):
    path = _write(tmp_path / "barriers.json", {
        "barriers": [
            {"mode": "plain", "permuted": True, "split": "test", "loss_barrier": 0.3, "error_barrier": 0.1},
            {"mode": "repair", "permuted": True, "split": "test", "loss_barrier": 0.1, "error_barrier": 0.02},
        ],
        "tags": {"width": "8", "seed": "0"},
        "provenance": {},
    })
    table = tidy.collect([path])
    assert len(table) == 2
    assert table["permuted"].dtype == bool
    assert table["width"].tolist() == [8.0, 8.0]
    assert table.set_index("mode")["loss_barrier"].to_dict() == {"plain": 0.3, "repair": 0.1}


def test_nested_dicts_flatten_and_lists_become_json(tmp_path):
    path = _write(tmp_path / "m.json", {"meta": {"method": "activation", "n": 3}, "per_group": [0.9, 0.8], "tags": {}})
    row = tidy.collect([path]).iloc[0]
    assert row["meta.method"] == "activation"
    assert json.loads(row["per_group"]) == [0.9, 0.8]


def test_tag_clash_is_a_user_error(tmp_path):
    path = _write(tmp_path / "r.json", {"test_acc": 0.5, "tags": {"test_acc": "1"}})
    with pytest.raises(UserError, match="r.json.*test_acc"):
        tidy.collect([path])


def test_bad_numeric_tag_names_column(tmp_path):
    path = _write(tmp_path / "r.json", {"test_acc": 0.5, "tags": {"width": "wide"}})
    with pytest.raises(UserError, match="'width' must be numeric"):
        tidy.collect([path])


def test_csv_inputs_concatenate_and_mix_with_json(tmp_path):
    pd.DataFrame({"alpha": [0.0, 1.0], "mode": "plain", "permuted": ["True", "True"], "loss": [1, 1], "width": [1, 1]}).to_csv(tmp_path / "a.csv", index=False)
    pd.DataFrame({"alpha": [0.0, 1.0], "mode": "plain", "permuted": [False, False], "loss": [2, 2], "width": [2, 2]}).to_csv(tmp_path / "b.csv", index=False)
    table = tidy.collect([tmp_path / "a.csv", tmp_path / "b.csv"])
    assert len(table) == 4
    assert table["permuted"].tolist() == [True, True, False, False]


def test_collect_cli_writes_csv_and_provenance_sidecar(tmp_path):
    paths = [_result(tmp_path, "a", "lth", 0), _result(tmp_path, "b", "naive", 0)]
    out = tmp_path / "runs.csv"
    assert cli.main(["collect", "--inputs", *map(str, paths), "--out", str(out)]) == 0
    table = tidy.read_table(out)
    assert sorted(table["branch"]) == ["lth", "naive"]
    sidecar = json.loads(outputs.sidecar_path(out).read_text())
    assert sidecar["config"]["inputs"] == [str(p) for p in paths]


def test_collect_cli_missing_input_is_one_line(tmp_path, capsys):
    code = cli.main(["collect", "--inputs", str(tmp_path / "nope.json"), "--out", str(tmp_path / "o.csv")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "nope.json does not exist" in err and len(err.splitlines()) == 1


def test_provenance_sidecars_are_not_results(tmp_path):
    path = _write(tmp_path / "lmc.csv.provenance.json", {"config": {}, "argv": []})
    with pytest.raises(UserError, match="provenance sidecar"):
        tidy.collect([path])
