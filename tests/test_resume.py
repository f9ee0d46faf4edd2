"""Resume: a killed run restarted with the same arguments ends bit-identical to an uninterrupted one."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from sparsebasin import checkpoints
from sparsebasin.data.base import ArrayDataset, DatasetInfo
from sparsebasin.models import build_model
from sparsebasin.training import TrainConfig, fit
from sparsebasin.training import record as run_record
from sparsebasin.training import resume

# A ResNet20 on tiny augmented images with a mask, momentum and weight decay, so the
# resumed state covers BatchNorm statistics, momentum buffers, the schedule and
# masking. A forward pre-hook sleeps during training so the kill lands mid-run.
SCRIPT = textwrap.dedent("""
    import sys, time, torch
    from sparsebasin.data.base import ArrayDataset, DatasetInfo
    from sparsebasin.models import build_model, prunable_keys
    from sparsebasin.training import TrainConfig, fit

    torch.set_num_threads(1)
    info = DatasetInfo(name="synthetic-img", num_classes=4, in_channels=3, input_shape=(3, 8, 8),
                       mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), augment=True)
    g = torch.Generator().manual_seed(0)
    train = ArrayDataset(info, torch.randint(0, 256, (96, 3, 8, 8), dtype=torch.uint8, generator=g),
                         torch.randint(0, 4, (96,), generator=g))
    test = ArrayDataset(info, torch.randint(0, 256, (40, 3, 8, 8), dtype=torch.uint8, generator=g),
                        torch.randint(0, 4, (40,), generator=g), split="test")
    cfg_model = {"name": "resnet20", "width": 1}
    torch.manual_seed(7)
    model = build_model(cfg_model, 4, 3)
    params = dict(model.named_parameters())
    mask = {k: torch.rand(params[k].shape, generator=g) < 0.3 for k in prunable_keys(model)}
    model.register_forward_pre_hook(lambda m, a: time.sleep(float(sys.argv[2])) if m.training else None)
    cfg = TrainConfig(epochs=8, lr=0.05, momentum=0.9, weight_decay=5e-4, batch_size=32, warmup_epochs=1)
    fit(model, train, test, cfg, out_dir=sys.argv[1], mask=mask, data_seed=3, save_epochs=[0, 2, 8],
        model_cfg=cfg_model, data_meta={"name": "synthetic-img", "num_classes": 4, "in_channels": 3, "input_size": 192},
        run_name="resume-test", device="cpu", progress="log", init_seed=7)
""")


def _run(script, out, env, sleep="0.1"):
    return subprocess.run([sys.executable, str(script), str(out), sleep], env=env, capture_output=True, text=True,
                          timeout=300)


def _weights(path):
    return checkpoints.load_checkpoint(path)["state_dict"]


def _equal(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_sigkill_then_rerun_is_bit_identical(tmp_path, cli_env):
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    ref = _run(script, tmp_path / "ref", cli_env, sleep="0")
    assert ref.returncode == 0, ref.stderr

    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, str(script), str(out), "0.1"], env=cli_env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not (out / ".resume.pt").exists():
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, "no resume file appeared"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "result.json").exists() and not (out / "final.pt").exists()  # really killed mid-run
    killed_at = torch.load(out / ".resume.pt", weights_only=False)["epoch"]
    assert 1 <= killed_at < 8

    again = _run(script, out, cli_env)
    assert again.returncode == 0, again.stderr
    assert f"resuming after epoch {killed_at}/8" in again.stderr
    assert not (out / ".resume.pt").exists()
    assert _equal(_weights(out / "final.pt"), _weights(tmp_path / "ref" / "final.pt"))
    for k in (0, 2, 8):
        assert _equal(_weights(out / "ckpt" / f"epoch{k}.pt"), _weights(tmp_path / "ref" / "ckpt" / f"epoch{k}.pt"))
    ref_rows = (tmp_path / "ref" / "metrics.csv").read_text().splitlines()
    rows = (out / "metrics.csv").read_text().splitlines()
    strip = lambda line: line.split(",")[:7]  # noqa: E731  (drop seconds, images_per_s)
    assert [strip(r) for r in rows] == [strip(r) for r in ref_rows] and len(rows) == 9


# ------------------------------------------------------------ in-process --

INFO = DatasetInfo(name="synthetic", num_classes=4, in_channels=1, input_shape=(12,), mean=(0.0,), std=(1.0,),
                   augment=False, flip=False)
META = {"name": "synthetic", "num_classes": 4, "in_channels": 1, "input_size": 12}
MLP_CFG = {"name": "mlp", "width": 1, "depth": 2, "hidden": 16}


def _ds(n, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 12, generator=g)
    return ArrayDataset(INFO, x, x[:, :4].argmax(1).long())


def _fit(out, lr=0.05):
    torch.manual_seed(0)
    model = build_model(MLP_CFG, 4, 1, input_size=12)
    cfg = TrainConfig(epochs=5, lr=lr, batch_size=32)
    return fit(model, _ds(160, 0), _ds(40, 1), cfg, out_dir=out, model_cfg=MLP_CFG, data_meta=META,
               run_name="inproc", progress="log", save_epochs=[1])


class Stop(Exception):
    pass


def _interrupt_after_resume_save(monkeypatch, epoch):
    real = resume.save

    def save(path, **kw):
        real(path, **kw)
        if kw["epoch"] == epoch:
            raise Stop

    monkeypatch.setattr(resume, "save", save)


def test_other_arguments_ignore_the_resume_file(tmp_path, monkeypatch, capsys):
    _fit(tmp_path / "ref", lr=0.02)
    with monkeypatch.context() as m:
        _interrupt_after_resume_save(m, 2)
        with pytest.raises(Stop):
            _fit(tmp_path / "run", lr=0.05)
    assert (tmp_path / "run" / ".resume.pt").exists()
    capsys.readouterr()
    _fit(tmp_path / "run", lr=0.02)
    err = capsys.readouterr().err
    assert "ignoring resume file" in err and "starting over" in err and "resuming" not in err
    assert _equal(_weights(tmp_path / "run" / "final.pt"), _weights(tmp_path / "ref" / "final.pt"))


def test_resume_in_process_and_after_the_last_epoch(tmp_path, monkeypatch, capsys):
    _fit(tmp_path / "ref")
    with monkeypatch.context() as m:
        _interrupt_after_resume_save(m, 3)
        with pytest.raises(Stop):
            _fit(tmp_path / "a")
    _fit(tmp_path / "a")
    assert "resuming after epoch 3/5" in capsys.readouterr().err
    assert _equal(_weights(tmp_path / "a" / "final.pt"), _weights(tmp_path / "ref" / "final.pt"))

    # Killed while writing the final outputs: the rerun skips training and writes them.
    with monkeypatch.context() as m:
        m.setattr(run_record.io, "write_json", lambda *a, **k: (_ for _ in ()).throw(Stop()))
        with pytest.raises(Stop):
            _fit(tmp_path / "b")
    assert (tmp_path / "b" / ".resume.pt").exists() and not (tmp_path / "b" / "result.json").exists()
    res = _fit(tmp_path / "b")
    assert "resuming after epoch 5/5" in capsys.readouterr().err
    assert _equal(_weights(tmp_path / "b" / "final.pt"), _weights(tmp_path / "ref" / "final.pt"))
    assert (tmp_path / "b" / "predictions.pt").exists() and res["epochs"] == 5
    assert len((tmp_path / "b" / "metrics.csv").read_text().splitlines()) == 6


def test_corrupt_resume_file_is_ignored(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / ".resume.pt").write_bytes(b"not a torch file")
    _fit(tmp_path / "run")
    assert "ignoring unreadable resume file" in capsys.readouterr().err
    assert not (tmp_path / "run" / ".resume.pt").exists()


def test_a_state_saved_with_more_gpus_than_visible_restores():
    """A run saved on 8 GPUs and requeued onto 1 (or a CPU) resumes: no CUDA RNG state is kept or restored."""
    state = resume.rng_state()
    assert "cuda" not in state and "cuda_all" not in state
    expected = torch.rand(3)
    resume.set_rng_state(state)
    old_layout = {**state, "cuda": [torch.zeros(16, dtype=torch.uint8), torch.ones(16, dtype=torch.uint8)]}
    resume.set_rng_state(old_layout)  # torch.cuda.set_rng_state_all would raise IndexError here
    assert torch.equal(torch.rand(3), expected)
