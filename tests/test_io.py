"""Atomic writes, artifact validation and provenance."""

import os

import pytest
import torch

from sparsebasin import io, provenance
from sparsebasin.errors import UserError


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with io.atomic_path(target) as tmp:
            tmp.write_text("half-written")
            raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_artifact_roundtrip_and_kind_check(tmp_path):
    p = tmp_path / "m.pt"
    io.save_artifact(p, "mask", {"mask": {"w": torch.ones(2, dtype=torch.bool)}}, {"seed": 1})
    obj = io.load_artifact(p, "mask")
    assert obj["provenance"] == {"seed": 1}
    with pytest.raises(UserError, match="is not a checkpoint file"):
        io.load_artifact(p, "checkpoint")


def test_truncated_artifact_is_one_clear_line(tmp_path):
    p = tmp_path / "c.pt"
    io.save_artifact(p, "checkpoint", {"state_dict": {"w": torch.randn(100, 100)}})
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match=r"truncated or corrupt.*rerun") as e:
        io.load_artifact(p, "checkpoint")
    assert "\n" not in str(e.value)


def test_another_kind_of_file_is_named_as_such_and_never_called_corrupt(tmp_path):
    """A CSV or JSON passed where an artifact goes is the user's path, not a damaged file: no advice to delete it."""
    for name, text in (("curve.csv", "alpha,loss\n0,1\n"), ("perm.json", '{"method": "weight"}')):
        (tmp_path / name).write_text(text, encoding="utf-8")
        with pytest.raises(UserError, match=r"is not a sparsebasin checkpoint .*not a PyTorch file.*check the path") as e:
            io.load_artifact(tmp_path / name, "checkpoint")
        assert "delete" not in str(e.value)


def test_missing_artifact_names_file(tmp_path):
    with pytest.raises(UserError, match="nope.pt does not exist"):
        io.load_artifact(tmp_path / "nope.pt", "mask")


def test_read_json_bad_file(tmp_path):
    p = tmp_path / "r.json"
    p.write_text("{not json")
    with pytest.raises(UserError, match="r.json is not valid JSON"):
        io.read_json(p)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_unwritable_directory(tmp_path):
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o500)
    try:
        with pytest.raises(UserError, match="not writable"):
            io.write_json(d / "x.json", {})
    finally:
        d.chmod(0o700)


def test_write_into_a_file_path_is_clear(tmp_path):
    f = tmp_path / "file"
    f.write_text("")
    with pytest.raises(UserError, match="cannot create directory"):
        io.write_json(f / "sub" / "x.json", {})


def test_provenance_has_code_version_and_config(monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    p = provenance.collect({"lr": 0.1}, {"seed": 3}, "cpu")
    assert p["config"] == {"lr": 0.1} and p["seeds"] == {"seed": 3}
    assert p["sparsebasin_version"] and p["torch_version"] == torch.__version__
    assert "git_commit" in p
    assert p["slurm_job_id"] == "4242"


def test_outputs_follow_umask_not_0600(tmp_path):
    old = os.umask(0o022)
    try:
        io.write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644
