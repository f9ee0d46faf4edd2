"""Resource options checked against the machine and the libraries before any work (sparsebasin.limits): threads
beyond the CPUs (a segfault in the OpenMP runtime), models too large for memory (allocator tracebacks after the
data had loaded), seeds beyond what torch and int64 tables hold (an overflow traceback), in the CLI and in the
workflow's config check alike; a crash leaves no lock that blocks the next run."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sparsebasin import limits, rundir
from sparsebasin.cli import main
from sparsebasin.plan.config import ConfigError, check

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"


def _train_argv(tmp: Path, *extra: str) -> list[str]:
    return ["train", "--dataset", "mnist1d", "--data-dir", str(tmp / "data"), "--train-subset", "256", "--model",
            "mlp", "--hidden", "16", "--epochs", "1", "--batch-size", "64", "--lr", "0.1", "--device", "cpu",
            "--progress", "log", "--out-dir", str(tmp / "run"), *extra]


def _one_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


@pytest.mark.slow
def test_too_many_threads_are_clamped_with_a_warning_not_a_segfault(tmp_path):
    res = subprocess.run([sys.executable, "-m", "sparsebasin", *_train_argv(tmp_path, "--threads", "100000")],
                         capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr[-2000:]
    warnings = [line for line in res.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1 and f"--threads 100000 is more than the {limits.cpus()} CPU(s)" in warnings[0]
    assert (tmp_path / "run" / "final.pt").is_file() and not (tmp_path / "run" / ".lock").exists()


@pytest.mark.parametrize("extra,words", [
    (["--hidden", "1000000000000"], ["model mlp", "hidden 1000000000000", "4e+13 parameters", "lower --width or --hidden"]),
    (["--width", "1000000000"], ["model mlp", "width 1000000000", "parameters", "host memory available"]),
    (["--depth", "1000000000"], ["model mlp", "depth 1000000000", "cannot be built", "lower --width, --depth or --hidden"]),
    (["--hidden", "4096", "--batch-size", "100000000"], ["needs at least", "activations a batch of 100000000 keeps"]),
])
def test_a_model_too_large_for_memory_is_one_line_before_any_work(tmp_path, capsys, extra, words):
    assert main(_train_argv(tmp_path, "--threads", "1", *extra)) == 2
    line = _one_error(capsys)
    assert all(w in line for w in words), line
    assert not (tmp_path / "data").exists() and not (tmp_path / "run").exists()  # nothing loaded, nothing made


def test_a_generated_dataset_too_large_for_memory_is_one_line(tmp_path, capsys):
    assert main(["prepare", "--dataset", "mnist1d", "--data-dir", str(tmp_path / "data"), "--n-train",
                 "1000000000000"]) == 2
    line = _one_error(capsys)
    assert "--n-train/--n-test: 1e+12 MNIST-1D examples" in line and "host memory" in line, line
    assert not (tmp_path / "data").exists()


def test_a_large_cnn_is_refused_from_its_card_shapes(tmp_path, capsys):
    from sparsebasin.data.cifar import write_synthetic

    write_synthetic("cifar10", tmp_path / "data", 20, 10)
    argv = ["train", "--dataset", "cifar10", "--data-dir", str(tmp_path / "data"), "--model", "resnet20", "--width",
            "1000000000", "--epochs", "1", "--device", "cpu", "--threads", "1", "--out-dir", str(tmp_path / "run")]
    assert main(argv) == 2
    line = _one_error(capsys)
    assert "model resnet20 (width 1000000000)" in line and "parameters" in line and "lower --width" in line
    assert not (tmp_path / "run").exists()


def test_the_estimate_counts_parameters_and_activations():
    params, acts = limits.describe_model({"name": "mlp", "width": 1, "hidden": 32, "depth": 2}, "mnist1d", 1e12)
    assert params == 40 * 32 + 32 + 32 * 32 + 32 + 32 * 10 + 10
    assert acts == 40 + 32 + 32  # the inputs the three Linear layers keep for one example


@pytest.mark.parametrize("argv,option", [
    (["--seed", str(2**64)], "--seed"),
    (["--seed", str(2**63)], "--seed"),
    (["--data-seed", str(2**70)], "--data-seed"),
])
def test_seeds_beyond_int64_are_one_line(tmp_path, capsys, argv, option):
    with pytest.raises(SystemExit) as exc:
        main(_train_argv(tmp_path, *argv))
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"argument {option}: must be an integer in [0, 2**63)" in err[0], err


@pytest.mark.parametrize("step,argv", [
    ("match", ["--a", "a.pt", "--b", "b.pt", "--out", "p.pt", "--dataset", "mnist1d", "--sample-seed", str(2**64)]),
    ("match", ["--a", "a.pt", "--b", "b.pt", "--out", "p.pt", "--dataset", "mnist1d", "--seed", str(2**64)]),
    ("interpolate", ["--a", "a.pt", "--b", "b.pt", "--out", "c.csv", "--dataset", "mnist1d", "--sample-seed",
                     str(2**64)]),
])
def test_other_steps_seeds_are_bounded_too(capsys, step, argv):
    with pytest.raises(SystemExit) as exc:
        main([step, *argv])
    assert exc.value.code == 2 and "must be an integer in [0, 2**63)" in capsys.readouterr().err


def test_a_fused_run_seed_beyond_int64_is_one_line(tmp_path, capsys):
    argv = ["fused", "--model", "mlp", "--dataset", "mnist1d", "--data-dir", str(tmp_path / "data"), "--device",
            "cpu", "--run", f"out_dir={tmp_path / 'a'},seed={2**64}"]
    assert main(argv) == 2
    assert "seed must be an integer in [0, 2**63)" in _one_error(capsys)


@pytest.mark.slow
def test_the_largest_seed_trains(tmp_path):
    res = subprocess.run([sys.executable, "-m", "sparsebasin", *_train_argv(tmp_path, "--threads", "1", "--seed",
                                                                            str(limits.MAX_SEED))],
                         capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr[-2000:]


def _config(**cell):
    config = copy.deepcopy(yaml.safe_load((REPO / "config.yaml").read_text(encoding="utf-8")))
    exp = next(iter(config["experiments"].values()))
    for key, value in cell.items():
        target = exp["cells"][0]
        *parents, last = key.split(".")
        for p in parents:
            target = target[p]
        target[last] = value
    return config


@pytest.mark.parametrize("key,value,words", [
    ("seeds", [0, 2**64], ["cells[0].seeds[1] = 18446744073709551616", "use seed indices up to 4611686018427387903"]),
    ("seeds", [0, 2**62], ["seeds[1] = 4611686018427387904", "past 2**63-1"]),  # B's 2s+1 overflows
    ("match.sample_seed", 2**63, ["match.sample_seed = 9223372036854775808", "past 2**63-1"]),
])
def test_the_config_check_bounds_every_seed_a_job_derives(key, value, words):
    with pytest.raises(ConfigError) as exc:
        check(_config(**{key: value}), SCHEMA)
    assert all(w in str(exc.value) for w in words), str(exc.value)


def test_the_largest_seed_index_passes_the_config_check():
    largest = (limits.MAX_SEED - 1) // 2
    check(_config(seeds=[0, largest]), SCHEMA)  # dense B trains with 2s+1 = 2**63-1 itself


def test_a_lock_file_left_by_a_killed_writer_does_not_block(tmp_path):
    """The run lock is an flock: it dies with its process. A lock file left behind (a segfault, SIGKILL) names
    a pid that holds nothing, and the next writer takes the directory."""
    run = tmp_path / "run"
    run.mkdir()
    (run / ".lock").write_text("pid 999999 on elsewhere\n", encoding="utf-8")
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, os, sys, time\n"
                               f"fd = os.open({str(run / '.lock')!r}, os.O_RDWR)\n"
                               "fcntl.flock(fd, fcntl.LOCK_EX)\nprint('held', flush=True)\ntime.sleep(60)\n"],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    holder.kill()  # dies holding the lock
    holder.wait(timeout=30)
    with rundir.locked([run]):
        assert "pid " in (run / ".lock").read_text(encoding="utf-8")
    assert not (run / ".lock").exists()
