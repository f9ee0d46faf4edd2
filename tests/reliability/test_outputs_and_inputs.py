"""An output that is also an input is refused before any work (issue: nothing lost, class 2 and 8).

Every step declares what it reads and writes (``paths(args)``); the CLI
refuses an output that resolves to an input (``./``, relative vs absolute,
a symlink or a hard link), two outputs that are one file, an input inside a
run directory the step would clean, and an input listed twice where a
duplicate distorts the result. Each case: exit 2, one line, nothing changed.
"""

from __future__ import annotations

import os
import shutil

import pytest
import torch
from relutil import diff_snapshots, error_lines, snapshot

from sparsebasin import cli
from sparsebasin.symmetry.permfile import save_permutation
from sparsebasin.symmetry.spec import spec_from_meta


class WS:
    def __init__(self, tmp, refs):
        self.tmp, self.refs = tmp, refs
        self.run = tmp / "run"
        shutil.copytree(refs.dense, self.run)
        self.prune = tmp / "prune"
        shutil.copytree(refs.prune, self.prune)
        self.mask = tmp / "m.pt"
        shutil.copy(refs.mask, self.mask)
        self.a = self.run / "final.pt"
        self.pred = tmp / "a.pt"
        shutil.copy(refs.dense / "predictions.pt", self.pred)
        self.pred_b = tmp / "b.pt"
        shutil.copy(refs.sparse / "predictions.pt", self.pred_b)
        self.result = tmp / "r.json"
        shutil.copy(refs.dense / "result.json", self.result)
        ck = torch.load(self.a, map_location="cpu", weights_only=True)
        _, spec = spec_from_meta(ck["model"], ck["data"])
        self.perm = tmp / "perm.pt"
        save_permutation(self.perm, {g: torch.arange(n) for g, n in spec.sizes.items()}, ck["model"], ck["data"], {})
        self.data = ["--dataset", "mnist1d", "--data-dir", str(refs.data), "--device", "cpu", "--threads", "1"]
        runs = tmp / "runs.csv"
        runs.write_text("dataset,model,width,seed,sparsity,k,branch,test_acc\n"
                        + "".join(f"mnist1d,mlp,1,{s},0.5,{k},{b},0.{5 + s}{k}\n"
                                  for s in (0, 1) for k in (0, 2) for b in ("lth", "naive", "permuted")))
        self.runs = runs

    def permute(self, out) -> list[str]:
        return ["permute", "--permutation", str(self.perm), "--input", str(self.mask), "--out", str(out)]

    def match(self, out, summary=None) -> list[str]:
        return ["match", "--a", str(self.a), "--b", str(self.run / "ckpt" / "epoch2.pt"), *self.data,
                "--batches", "1", "--out", str(out), "--summary", str(summary or self.tmp / "p.json")]

    def train_into(self, init, out) -> list[str]:
        return ["train", *self.data, "--model", "mlp", "--hidden", "32", "--epochs", "1", "--init", str(init),
                "--out-dir", str(out)]


def _cases():
    c = {}
    c["permute_input_is_output"] = lambda w: w.permute(w.mask)
    c["permute_input_is_output_dot"] = lambda w: w.permute(os.path.join(os.path.dirname(w.mask), ".", "m.pt"))
    c["permute_input_is_output_relative"] = lambda w: (os.chdir(w.tmp), w.permute("m.pt"))[1]

    def symlink(w):
        (w.tmp / "link.pt").symlink_to(w.mask)
        return w.permute(w.tmp / "link.pt")

    def hardlink(w):
        os.link(w.a, w.tmp / "hard.pt")
        return w.match(w.tmp / "hard.pt")

    c["permute_output_is_symlink_to_input"] = symlink
    c["match_output_is_hard_link_to_input"] = hardlink
    c["match_output_is_checkpoint_a"] = lambda w: w.match(w.a)
    c["match_out_equals_summary"] = lambda w: w.match(w.tmp / "p.pt", w.tmp / "p.pt")
    c["collect_output_is_input"] = lambda w: ["collect", "--inputs", str(w.result), "--out", str(w.result)]
    c["collect_duplicate_inputs"] = lambda w: ["collect", "--inputs", str(w.result), str(w.tmp / "." / "r.json"),
                                               "--out", str(w.tmp / "t.csv")]
    c["ensemble_output_is_member"] = lambda w: ["ensemble", "--predictions", str(w.pred), str(w.pred_b),
                                                "--group", "g", "--out", str(w.pred)]
    c["ensemble_member_twice"] = lambda w: ["ensemble", "--predictions", str(w.pred), str(w.tmp / "." / "a.pt"),
                                            "--group", "g", "--out", str(w.tmp / "e.json")]
    c["train_init_inside_out_dir"] = lambda w: w.train_into(w.a, w.run)
    c["sparse_init_inside_out_dir"] = lambda w: [
        "sparse", "--init", str(w.run / "ckpt" / "epoch2.pt"), "--mask", str(w.mask), "--branch", "lth", *w.data,
        "--epochs", "1", "--out-dir", str(w.run)]
    c["prune_checkpoint_inside_out_dir"] = lambda w: [
        "prune", "--checkpoint", str(w.prune / "S0.5" / "model.pt"), "--targets", "0.5", "--rate", "0.5", *w.data,
        "--out-dir", str(w.prune)]
    c["fused_init_inside_a_run_dir"] = lambda w: [
        "fused", "--run", f"out_dir={w.run},init={w.a},mask={w.mask},branch=lth", *w.data, "--epochs", "1"]
    c["interpolate_curve_is_barriers"] = lambda w: [
        "interpolate", "--a", str(w.a), "--b", str(w.a), *w.data, "--out", str(w.tmp / "x.csv"),
        "--barriers", str(w.tmp / "x.csv")]
    c["interpolate_barriers_is_sidecar"] = lambda w: [
        "interpolate", "--a", str(w.a), "--b", str(w.a), *w.data, "--out", str(w.tmp / "x.csv"),
        "--barriers", str(w.tmp / "x.csv.provenance.json")]
    c["figure_pdf_is_png"] = lambda w: ["figure", "--kind", "accuracy_vs_rewind", "--table", str(w.runs),
                                        "--out", str(w.tmp / "f.pdf"), "--png", str(w.tmp / "f.pdf")]
    c["figure_output_is_table"] = lambda w: ["figure", "--kind", "accuracy_vs_rewind", "--table", str(w.runs),
                                             "--out", str(w.runs)]
    c["table_output_is_input"] = lambda w: ["table", "--kind", "accuracy", "--table", str(w.runs),
                                            "--out-csv", str(w.runs), "--out-md", str(w.tmp / "t.md")]
    c["summary_output_is_runs"] = lambda w: ["summary", "--runs", str(w.runs), "--out", str(w.runs)]
    c["plane_output_is_origin"] = lambda w: ["plane", "--origin", str(w.a), "--p1", str(w.run / "ckpt/epoch2.pt"),
                                             "--p2", str(w.run / "ckpt/epoch4.pt"), *w.data, "--out", str(w.a)]
    return c


CASES = _cases()


@pytest.mark.parametrize("name", sorted(CASES))
def test_output_that_is_an_input_is_refused(name, refs, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    w = WS(tmp_path, refs)
    argv = CASES[name](w)
    before = snapshot(tmp_path, refs.data)
    try:
        rc = cli.main(argv)
    except SystemExit as exc:
        rc = exc.code
    err = capsys.readouterr().err
    assert rc == 2, err[-2000:]
    assert "Traceback" not in err
    lines = error_lines(err)
    assert len(lines) == 1, lines
    assert any(w_ in lines[0] for w_ in ("also the input", "same file", "contains the input", "run directory")), lines
    assert diff_snapshots(before, snapshot(tmp_path, refs.data)) == []


def test_every_step_declares_its_paths():
    import importlib

    for step, (module, _) in cli.STEPS.items():
        assert hasattr(importlib.import_module(module), "paths"), step
