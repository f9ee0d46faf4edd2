"""A run directory shared by configs that keep different rewind checkpoints (issue 31, item 2): a finished run
with more checkpoints than asked is the run asked for; one without a checkpoint now asked for is trained again
keeping every checkpoint it had, so two configs on one tree never take each other's checkpoints away."""

from __future__ import annotations

import json

import torch
from _pruning_data import make_data

from sparsebasin.checkpoints import load_checkpoint
from sparsebasin.cli import main


def _train(tmp_path, out, save, capsys, *extra):
    argv = ["train", "--dataset", "mnist1d", "--data-dir", str(tmp_path / "data"), "--model", "mlp", "--hidden", "16",
            "--epochs", "3", "--lr", "0.1", "--batch-size", "64", "--device", "cpu", "--threads", "1",
            "--progress", "log", "--save-epochs", save, "--out-dir", str(out), *extra]
    rc = main(argv)
    return rc, capsys.readouterr().err


def test_checkpoints_of_another_config_are_kept(tmp_path, capsys):
    make_data(tmp_path / "data")
    out = tmp_path / "run"
    assert _train(tmp_path, out, "0,2", capsys)[0] == 0
    first = {p.name: load_checkpoint(p)["state_dict"] for p in (out / "ckpt").iterdir()}
    weights = load_checkpoint(out / "final.pt")["state_dict"]
    result = json.loads((out / "result.json").read_text(encoding="utf-8"))

    rc, err = _train(tmp_path, out, "0", capsys)  # asks for fewer: the run is finished
    assert rc == 0 and "already finished" in err, err
    assert {p.name for p in (out / "ckpt").iterdir()} == {"epoch0.pt", "epoch2.pt"}

    rc, err = _train(tmp_path, out, "0,1", capsys, "--rebuild-stale")  # asks for one it lacks
    assert rc == 0 and "without the rewind checkpoint(s) [1]" in err, err
    assert {p.name for p in (out / "ckpt").iterdir()} == {"epoch0.pt", "epoch1.pt", "epoch2.pt"}
    for name, state in first.items():  # bit-identical on CPU: the same run, one more checkpoint
        again = load_checkpoint(out / "ckpt" / name)["state_dict"]
        assert all(torch.equal(state[k], again[k]) for k in state), name
    after = load_checkpoint(out / "final.pt")["state_dict"]
    assert all(torch.equal(weights[k], after[k]) for k in weights)
    assert json.loads((out / "result.json").read_text(encoding="utf-8"))["test_acc"] == result["test_acc"]
