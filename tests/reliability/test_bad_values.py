"""Every step CLI against a table of bad values: one line, exit 2, nothing created or changed.

The options come from the step parsers themselves, so a new numeric option is
covered the day it is added (and one declared with a bare ``int``/``float``,
which would accept 0, -4, NaN or inf, fails ``test_every_typed_option_validates``).
Devices: exactly ``auto``, ``cpu``, ``cuda`` and ``cuda:N`` are accepted; CUDA
on this machine (none) is refused at run time, before any file is written.
"""

from __future__ import annotations

import argparse
import importlib

import pytest
import torch
from relutil import REPO, diff_snapshots, error_lines, snapshot

from sparsebasin import cli
from sparsebasin.steps.common import Number, NumberList, device_arg
from sparsebasin.symmetry.permfile import save_permutation
from sparsebasin.symmetry.spec import spec_from_meta


def parser_of(step: str) -> argparse.ArgumentParser:
    module = importlib.import_module(cli.STEPS[step][0])
    p = cli.StepParser(prog=f"sparsebasin {step}")
    module.add_arguments(p)
    return p


def typed_options(step: str):
    """(option string, type) of every option with a type."""
    out = []
    for action in parser_of(step)._actions:
        if action.option_strings and action.type is not None:
            out.append((action.option_strings[0], action.type))
    return out


def test_every_typed_option_validates():
    """No option parses numbers with a bare int/float (which accept 0, -4, nan, inf)."""
    bare = [(step, opt) for step in cli.STEPS for opt, kind in typed_options(step)
            if not isinstance(kind, (Number, NumberList)) and kind is not device_arg
            and getattr(kind, "__module__", "").startswith("builtins")]
    assert bare == [], bare


class Templates:
    """A valid command line per step, on inputs from the reference runs."""

    def __init__(self, tmp, refs):
        self.tmp, self.refs = tmp, refs
        d = str(refs.data)
        self.perm = tmp / "perm.pt"
        ck = torch.load(refs.dense / "final.pt", map_location="cpu", weights_only=True)
        _, spec = spec_from_meta(ck["model"], ck["data"])
        save_permutation(self.perm, {g: torch.arange(n) for g, n in spec.sizes.items()}, ck["model"], ck["data"], {})
        runs = tmp / "runs.csv"
        runs.write_text("experiment,dataset,model,width,seed,sparsity,k,branch,test_acc,test_top5\n"
                        + "".join(f"e,mnist1d,mlp,1,{s},0.5,{k},{b},0.{5 + s}{k},0.9\n"
                                  for s in (0, 1) for k in (0, 2) for b in ("lth", "naive", "permuted")))
        self.runs = runs
        optim = ["--epochs", "1", "--lr", "0.1", "--momentum", "0.9", "--weight-decay", "0", "--batch-size", "64",
                 "--warmup-epochs", "0"]
        run = ["--seed", "0", "--data-seed", "0", "--device", "cpu", "--threads", "1", "--progress", "log"]
        data = ["--dataset", "mnist1d", "--data-dir", d, "--train-subset", "200"]
        out = str(tmp / "out")
        self.argv = {
            "prepare": ["prepare", "--dataset", "mnist1d", "--data-dir", str(tmp / "newdata"), "--n-train", "100",
                        "--n-test", "50", "--seed", "0"],
            "download": ["download", "--dataset", "mnist1d", "--data-dir", d],
            "train": ["train", *data, "--model", "mlp", "--width", "1", "--depth", "1", "--hidden", "8",
                      "--preset", "mnist1d_dense", *optim, *run, "--save-epochs", "0", "--out-dir", out],
            "sparse": ["sparse", "--init", str(refs.init), "--mask", str(refs.mask), "--branch", "lth", *data,
                       "--preset", "mnist1d_sparse", *optim, *run, "--save-epochs", "0", "--out-dir", out],
            "prune": ["prune", "--checkpoint", str(refs.dense / "final.pt"), "--targets", "0.5", "--rate", "0.5",
                      "--ft-preset", "mnist1d_imp_ft", "--ft-epochs", "1", "--ft-lr", "0.1", "--ft-momentum", "0",
                      "--ft-weight-decay", "0", "--ft-batch-size", "64", "--ft-warmup-epochs", "0", *data, *run,
                      "--out-dir", out],
            "fused": ["fused", "--run", f"out_dir={out},seed=0", *data, "--model", "mlp", "--width", "1", "--depth", "1",
                      "--hidden", "8", "--preset", "mnist1d_dense", *optim, *run, "--save-epochs", "0"],
            "match": ["match", "--a", str(refs.dense / "final.pt"), "--b", str(refs.init), *data, "--batches", "1",
                      "--batch-size", "64", "--chunk", "32", "--seed", "0", "--max-iter", "5", "--device", "cpu",
                      "--threads", "1", "--out", str(tmp / "p.pt"), "--summary", str(tmp / "p.json")],
            "permute": ["permute", "--permutation", str(self.perm), "--input", str(refs.mask), "--out",
                        str(tmp / "pm.pt")],
            "interpolate": ["interpolate", "--a", str(refs.dense / "final.pt"), "--b", str(refs.init), *data,
                            "--alphas", "2", "--modes", "plain", "--batch-size", "100", "--eval-batches", "1",
                            "--reset-batches", "1", "--splits", "test", "--device", "cpu", "--threads", "1",
                            "--out", str(tmp / "c.csv"), "--barriers", str(tmp / "b.json")],
            "plane": ["plane", "--origin", str(refs.dense / "final.pt"), "--p1", str(refs.init),
                      "--p2", str(refs.dense / "ckpt" / "epoch4.pt"), *data, "--grid", "2", "--margin", "0.1",
                      "--batch-size", "100", "--eval-batches", "1", "--reset-batches", "1", "--device", "cpu",
                      "--threads", "1", "--out", str(tmp / "plane.csv")],
            "ensemble": ["ensemble", "--predictions", str(refs.dense / "predictions.pt"),
                         str(refs.sparse / "predictions.pt"), "--group", "g", "--out", str(tmp / "e.json")],
            "collect": ["collect", "--inputs", str(refs.dense / "result.json"), "--out", str(tmp / "t.csv")],
            "figure": ["figure", "--kind", "accuracy_vs_sparsity", "--table", str(runs), "--ks", "0,2",
                       "--out", str(tmp / "f.pdf"), "--png", str(tmp / "f.png")],
            "table": ["table", "--kind", "early_matching", "--table", str(runs), "--k", "2",
                      "--out-csv", str(tmp / "t.csv"), "--out-md", str(tmp / "t.md")],
            "summary": ["summary", "--runs", str(runs), "--gap-floor", "0.1", "--out", str(tmp / "s.md")],
            "scorecard": ["scorecard", "--runs", str(runs), "--metrics", "test_acc", "--sigma", "2",
                          "--out-csv", str(tmp / "sc.csv"), "--out-md", str(tmp / "sc.md")],
            "plan": ["plan", "--configfile", str(REPO / "config.yaml"), "--kind", "sparse", "--where", "width=4"],
        }

    def with_value(self, step: str, option: str, value: str) -> list[str]:
        argv = list(self.argv[step])
        if option in argv:
            argv[argv.index(option) + 1] = value
        else:
            argv += [option, value]
        return argv


def bad_values(kind) -> list[str]:
    if kind is device_arg:
        return ["meta", "gpu", "cpu:0", "cuda:x", "cuda:-1", "", "mps"]
    if not isinstance(kind, (Number, NumberList)):  # a step's own validating type (e.g. --splits)
        return ["x", "", "train,x"]
    if isinstance(kind, NumberList):
        return ["x", "-1", "nan", "0.5,,x"] + (["inf"] if kind.item.kind is float else [])
    values = ["x", "-4", "nan", "inf", "1e400", ""]
    if not kind.allows_zero:
        values.append("0")
    if kind.kind is int:
        values.append("2.5")
    if kind.maximum is not None:
        values.append(str(kind.maximum + 1))
    return values


CASES = [(step, opt, value) for step in cli.STEPS for opt, kind in typed_options(step) for value in bad_values(kind)]
# CUDA on a machine without one: a valid device string refused at run time, before anything is written.
CASES += [(step, "--device", dev) for step in cli.STEPS for opt, kind in typed_options(step)
          if opt == "--device" for dev in ("cuda", "cuda:3")]


def test_table_is_large():
    assert len(CASES) > 300, len(CASES)
    assert {s for s, _, _ in CASES} >= {"train", "sparse", "prune", "fused", "match", "interpolate", "plane",
                                         "prepare", "figure", "table", "summary"}


@pytest.fixture(scope="module")
def templates(refs, tmp_path_factory):
    return Templates(tmp_path_factory.mktemp("badvalues"), refs)


def _run(argv, capsys):
    try:
        rc = cli.main(list(argv))
    except SystemExit as exc:
        rc = exc.code if isinstance(exc.code, int) else 1
    return rc, capsys.readouterr().err


@pytest.mark.parametrize("step,option,value", CASES, ids=[f"{s}{o}={v!r}" for s, o, v in CASES])
def test_bad_value_is_one_line_and_changes_nothing(step, option, value, templates, refs, capsys):
    dirs = [templates.tmp, refs.data]
    before = snapshot(*dirs)
    rc, err = _run(templates.with_value(step, option, value), capsys)
    assert rc == 2, f"exit {rc} for {option} {value!r}\n{err[-2000:]}"
    assert "Traceback" not in err, err[-3000:]
    lines = error_lines(err)
    assert len(lines) == 1, lines
    assert lines[0].startswith("error:") and (option in lines[0] or "device" in lines[0]), lines[0]
    assert diff_snapshots(before, snapshot(*dirs)) == []


@pytest.mark.parametrize("step", sorted(cli.STEPS))
def test_template_is_valid(step, templates, refs, capsys, tmp_path):
    """Each template parses (so the bad value, not the template, is what a case refuses)."""
    parser_of(step).parse_args(templates.argv[step][1:])
