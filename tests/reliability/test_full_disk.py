"""A disk that fills up during a checkpoint write: one clear line, the previous files intact, the rerun succeeds.

The run directory lives on a 1 MiB tmpfs mounted for the test (a loop-mounted
ext4 image if tmpfs cannot be mounted). The training child stops itself just
before a chosen write (``stop-before``); the test fills the disk to the last
byte and lets it continue, so the write meets ENOSPC for real. After the
failure the test frees the space and reruns the same command.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
import torch
from relutil import assert_same_outputs, check_tree, error_lines, is_tmp, wait_stopped

from sparsebasin import checkpoints
from sparsebasin import io as sio

pytestmark = pytest.mark.slow


def _run(cmd):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


@contextlib.contextmanager
def small_disk(where: Path, size_kib: int = 1024):
    """Mount a size-limited file system at ``where``; skip if this machine cannot."""
    where.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a small file system needs root")
    tmpfs = _run(["mount", "-t", "tmpfs", "-o", f"size={size_kib}k,mode=0755", "tmpfs", str(where)])
    mounted = tmpfs.returncode == 0
    why = tmpfs.stderr.strip()
    if not mounted and shutil.which("mkfs.ext4"):
        image = where.parent / "disk.img"
        with open(image, "wb") as fh:
            fh.truncate(size_kib * 1024 * 4)
        mk = _run(["mkfs.ext4", "-q", "-F", str(image)])
        loop = _run(["mount", "-o", "loop", str(image), str(where)])
        mounted = mk.returncode == 0 and loop.returncode == 0
        why += "; loop: " + (mk.stderr + loop.stderr).strip()
    if not mounted:
        pytest.skip(f"cannot mount a small file system (tmpfs or loop): {why}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True, timeout=60)


def fill(disk: Path) -> Path:
    """Write a filler file until the file system is full (ENOSPC)."""
    filler = disk / "filler.bin"
    chunk = b"\0" * 4096
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        while True:
            try:
                os.write(fd, chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
                break
        for size in (512, 64, 1):  # the last partial page
            while True:
                try:
                    os.write(fd, chunk[:size])
                except OSError:
                    break
    finally:
        os.close(fd)
    return filler


@pytest.mark.parametrize("label, path, previous", [
    (".staging/ckpt/epoch2.pt", ".staging/ckpt/epoch2.pt", 1),  # a rewind checkpoint (staged until the end)
    (".resume.pt@3", ".resume.pt", 2),        # the scratch state replaced every epoch
    ("final.pt", "final.pt", 6),              # the first declared output
])
def test_disk_full_during_checkpoint_write(label, path, previous, refs, forkserver, tmp_path):
    with small_disk(tmp_path / "disk") as disk:
        out = disk / "run"
        argv = refs.argv("dense", out)
        state = {}

        def fill_when_stopped(pid, run):
            wait_stopped(pid)
            state["filler"] = fill(disk)
            os.kill(pid, signal.SIGCONT)

        run = forkserver.run(argv, tmp_path, root=out, actions={label: "stop-before"}, on_start=fill_when_stopped)
        err = run.err
        assert run.status == 2, f"status {run.status}\n{err[-3000:]}"
        assert "Traceback" not in err
        lines = error_lines(err)
        assert len(lines) == 1, lines
        line = lines[0]
        assert line.startswith("error: could not write ") and str(out / path) in line, line
        assert "space" in line and "rerun" in line, line
        print(f"\n{label}: {line}")

        # Nothing half-written, the previous state intact, no temporaries left behind.
        kinds = check_tree(out)
        assert not [p for p in out.rglob("*") if is_tmp(p)]
        assert not any(name in kinds for name in ("final.pt", "result.json", "metrics.csv", "predictions.pt"))
        assert sio.load_artifact(out / ".resume.pt", "resume")["epoch"] == previous
        ref_epoch0 = checkpoints.load_checkpoint(refs.dense / "ckpt" / "epoch0.pt")["state_dict"]
        epoch0 = checkpoints.load_checkpoint(out / ".staging" / "ckpt" / "epoch0.pt")["state_dict"]
        assert all(torch.equal(ref_epoch0[k], epoch0[k]) for k in ref_epoch0)
        if path.endswith("ckpt/epoch2.pt"):
            assert not (out / path).exists()

        # Space is back: the same command resumes and ends bit-identical to the undisturbed run.
        state["filler"].unlink()
        again = forkserver.run(argv, tmp_path, root=out)
        assert again.status == 0, again.err[-3000:]
        assert f"resuming after epoch {previous}/6" in again.err
        assert_same_outputs(refs.dense, out)


@pytest.mark.parametrize("writer", ["write_json", "torch_save"])
def test_disk_full_error_says_no_space_left(writer, tmp_path):
    """The one line tells the user the disk is full, whatever kind of file was being written."""
    with small_disk(tmp_path / "disk", size_kib=256) as disk:
        target = disk / "out" / ("x.json" if writer == "write_json" else "x.pt")
        target.parent.mkdir()
        fill(disk)
        payload = {"w": torch.zeros(10_000)}
        with pytest.raises(sio.UserError) as info:
            if writer == "write_json":
                sio.write_json(target, {"w": payload["w"].tolist()})
            else:
                sio.torch_save(target, payload)
        line = str(info.value)
        assert "\n" not in line and str(target) in line, line
        assert "No space left on device" in line, line
        assert not target.exists() and not [p for p in target.parent.iterdir() if is_tmp(p)]


@pytest.mark.parametrize("fmt", ["pdf", "png"])
def test_full_disk_while_writing_a_figure_is_one_line(tmp_path, capsys, fmt):
    """matplotlib turns ENOSPC into an AttributeError while it cleans up; the step still names the disk."""
    from sparsebasin import cli

    runs = tmp_path / "runs.csv"
    runs.write_text("dataset,model,width,seed,sparsity,k,branch,test_acc\n"
                    + "".join(f"mnist1d,mlp,1,{s},0.5,{k},{b},0.{5 + s}{k}\n"
                              for s in (0, 1) for k in (0, 2) for b in ("lth", "naive", "permuted")))
    with small_disk(tmp_path / "disk", 256) as disk:
        fill(disk)
        before = sorted(p.name for p in disk.iterdir())
        out = disk / f"fig.{fmt}"
        argv = ["figure", "--kind", "accuracy_vs_rewind", "--table", str(runs), "--out", str(disk / "fig.pdf")]
        if fmt == "png":
            argv = ["figure", "--kind", "accuracy_vs_rewind", "--table", str(runs), "--out", str(tmp_path / "f.pdf"),
                    "--png", str(out)]
        rc = cli.main(argv)
        err = capsys.readouterr().err
        assert rc == 2, err
        assert "Traceback" not in err
        lines = error_lines(err)
        assert len(lines) == 1 and "No space left on device" in lines[0] and str(out) in lines[0], lines
        assert sorted(p.name for p in disk.iterdir()) == before  # no temporary left behind
