"""A prune step killed with SIGKILL mid-round and rerun ends bit-identical to an uninterrupted one."""

import signal
import subprocess
import sys
import time

import pytest
import torch
from _pruning_data import init_checkpoint, make_data

from sparsebasin import checkpoints, io


def _cmd(root, out):
    return [sys.executable, "-m", "sparsebasin", "prune", "--checkpoint", str(root / "A.pt"), "--targets", "0.5",
            "--rate", "0.3", "--ft-preset", "mnist1d_imp_ft", "--ft-epochs", "30", "--dataset", "mnist1d",
            "--data-dir", str(root / "data"), "--device", "cpu", "--progress", "log", "--threads", "1",
            "--out-dir", str(root / out), "--tag", "seed=0"]


@pytest.mark.slow
def test_killed_prune_resumes_bit_identical(tmp_path, cli_env):
    make_data(tmp_path / "data")
    init_checkpoint(tmp_path / "A.pt", seed=0, epoch=3)

    # Kill once round 2 (the capped branch) has finished at least one epoch but not all.
    proc = subprocess.Popen(_cmd(tmp_path, "killed"), env=cli_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    resume_file = tmp_path / "killed" / "rounds" / "round2" / ".resume.pt"
    deadline = time.time() + 300
    while not resume_file.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    assert (tmp_path / "killed" / "rounds" / "round1.pt").exists()
    assert not (tmp_path / "killed" / "rounds" / "round2.pt").exists()
    assert not (tmp_path / "killed" / "S0.5" / "mask.pt").exists()

    rerun = subprocess.run(_cmd(tmp_path, "killed"), env=cli_env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "imp-round2: resuming after epoch" in rerun.stderr
    assert "imp-round1 epoch" not in rerun.stderr  # finished rounds are not redone
    clean = subprocess.run(_cmd(tmp_path, "clean"), env=cli_env, capture_output=True, text=True, timeout=600)
    assert clean.returncode == 0, clean.stderr[-2000:]

    for rel in ("rounds/round1.pt", "rounds/round2.pt", "S0.5/model.pt"):
        a = checkpoints.load_checkpoint(tmp_path / "killed" / rel)["state_dict"]
        b = checkpoints.load_checkpoint(tmp_path / "clean" / rel)["state_dict"]
        assert all(torch.equal(a[k], b[k]) for k in a), rel
    ma = checkpoints.load_mask(tmp_path / "killed" / "S0.5" / "mask.pt")["mask"]
    mb = checkpoints.load_mask(tmp_path / "clean" / "S0.5" / "mask.pt")["mask"]
    assert all(torch.equal(ma[k], mb[k]) for k in ma)
    ra, rb = (io.read_json(tmp_path / d / "S0.5" / "result.json") for d in ("killed", "clean"))
    assert ra["test_acc"] == rb["test_acc"] and ra["test_loss"] == rb["test_loss"]
    assert not list((tmp_path / "killed").rglob(".resume.pt"))
