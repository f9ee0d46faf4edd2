"""Artifacts carry a checksum of their tensors: a bit flip on disk is one line naming the file and tensor.

Damage is made the two ways a file can change: one byte flipped inside a
tensor's storage in the torch zip (a disk or transfer error), and a rewrite
through torch.load/torch.save with one value changed but the old checksums
kept. Files written before checksums existed stay readable.
"""

from __future__ import annotations

import struct
import zipfile

import pytest
import torch

from sparsebasin import cli, io
from sparsebasin.checkpoints import data_meta, load_checkpoint, load_mask, save_checkpoint, save_mask
from sparsebasin.data import dataset_info
from sparsebasin.errors import UserError
from sparsebasin.models import build_model, prunable_keys
from sparsebasin.symmetry.permfile import load_permutation, save_permutation
from sparsebasin.symmetry.spec import spec_from_meta

CFG = {"name": "mlp", "width": 1, "hidden": 8, "depth": 2}
META = data_meta(dataset_info("mnist1d"))


def flip_byte_in_storage(path, storage_bytes: int, offset: int = 5) -> str:
    """Flip one bit of the first stored tensor of exactly ``storage_bytes`` bytes (uncompressed zip entry);
    returns the entry's name."""
    with zipfile.ZipFile(path) as zf:
        info = next(i for i in zf.infolist() if "/data/" in i.filename and i.file_size == storage_bytes)
    raw = bytearray(path.read_bytes())
    name_len, extra_len = struct.unpack("<HH", raw[info.header_offset + 26: info.header_offset + 30])
    start = info.header_offset + 30 + name_len + extra_len
    assert info.compress_type == zipfile.ZIP_STORED
    raw[start + offset] ^= 0x10
    path.write_bytes(bytes(raw))
    return info.filename


def rewrite(path, change) -> None:
    """torch.load / change in place / torch.save: the old checksums are kept."""
    obj = torch.load(path, weights_only=True)
    change(obj)
    torch.save(obj, path)


def model():
    torch.manual_seed(0)
    return build_model(CFG, 10, 1, input_size=40)


def mask_of(m, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {k: torch.rand(p.shape, generator=g) < 0.5 for k, p in m.named_parameters() if k in prunable_keys(m)}


def one_line(exc) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


def test_checkpoint_bit_flip_is_refused_naming_the_tensor(tmp_path):
    m = model()
    p = tmp_path / "final.pt"
    save_checkpoint(p, m, CFG, META, epoch=1)
    w = m.state_dict()["hidden.1.weight"]  # the only 8x8 tensor: its storage is 256 bytes
    flip_byte_in_storage(p, w.numel() * 4)
    with pytest.raises(UserError) as e:
        load_checkpoint(p)
    text = one_line(e)
    assert str(p) in text and "fails its checksum (tensor hidden.1.weight" in text
    assert "delete it and rerun the step that made it" in text


def test_checkpoint_rewritten_with_one_value_changed_is_refused(tmp_path):
    p = tmp_path / "final.pt"
    save_checkpoint(p, model(), CFG, META, epoch=1)
    rewrite(p, lambda o: o["state_dict"]["head.bias"].__setitem__(3, 0.125))
    with pytest.raises(UserError, match=r"fails its checksum \(tensor head.bias changed\)"):
        load_checkpoint(p)


def test_mask_bit_flip_and_rewrite_are_refused(tmp_path):
    m = model()
    mask = mask_of(m)
    p = tmp_path / "mask.pt"
    save_mask(p, mask, CFG, META, {"requested": 0.5})
    key = "hidden.1.weight"
    flip_byte_in_storage(p, mask[key].numel(), offset=int((~mask[key]).reshape(-1).nonzero()[0]))
    with pytest.raises(UserError, match=r"mask.pt fails its checksum \(tensor mask.hidden.1.weight"):
        load_mask(p)


def _flip_one_pruned_entry(obj, key="hidden.1.weight"):
    m = obj["mask"][key].reshape(-1)
    m[int((~m).nonzero()[0])] = True


def test_mask_with_one_pruned_entry_flipped_on_is_refused_by_its_kept_counts(tmp_path):
    """Without any checksum (a file of an older version, or the checksums stripped), the counts it records
    still catch the flipped entry: today such a mask trains as another density."""
    m = model()
    mask = mask_of(m)
    p = tmp_path / "mask.pt"
    from sparsebasin.pruning.report import sparsity_report

    save_mask(p, mask, CFG, META, sparsity_report(m, mask, 0.5))

    def change(obj):
        obj.pop("checksums", None)
        obj.pop("kept", None)  # only the sparsity report's per-layer counts remain
        _flip_one_pruned_entry(obj)
    rewrite(p, change)
    with pytest.raises(UserError) as e:
        load_mask(p)
    text = one_line(e)
    assert "mask entry hidden.1.weight keeps" in text and "the file records" in text and str(p) in text


def test_sparse_step_refuses_a_mask_with_one_entry_flipped_on(tmp_path, capsys, monkeypatch):
    from sparsebasin.data import mnist1d

    real = mnist1d.load
    small = mnist1d.MNIST1DConfig(n_train=64, n_test=32, seed=0)
    monkeypatch.setattr(mnist1d, "load", lambda name, root, split, config=None: real(name, root, split, small))
    m = model()
    save_checkpoint(tmp_path / "init.pt", m, CFG, META, epoch=0)
    save_mask(tmp_path / "mask.pt", mask_of(m), CFG, META, {"requested": 0.5})
    rewrite(tmp_path / "mask.pt", _flip_one_pruned_entry)
    out = tmp_path / "run"
    rc = cli.main(["sparse", "--init", str(tmp_path / "init.pt"), "--mask", str(tmp_path / "mask.pt"),
                   "--branch", "lth", "--dataset", "mnist1d", "--data-dir", str(tmp_path / "data"), "--device", "cpu",
                   "--epochs", "1", "--batch-size", "32", "--progress", "log", "--out-dir", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err[-1].startswith("error: ") and "mask.pt fails its checksum" in err[-1]
    assert not (out / "result.json").exists()


def test_permutation_and_predictions_are_checked(tmp_path):
    model_, spec = spec_from_meta(CFG, META)
    perm = {g: torch.randperm(n, generator=torch.Generator().manual_seed(1)) for g, n in spec.sizes.items()}
    pp = tmp_path / "perm.pt"
    save_permutation(pp, perm, CFG, META, {"method": "weight"})
    rewrite(pp, lambda o: o["perm"]["hidden.0"].__setitem__(slice(0, 2), o["perm"]["hidden.0"][[1, 0]].clone()))
    with pytest.raises(UserError, match=r"perm.pt fails its checksum \(tensor perm.hidden.0 changed\)"):
        load_permutation(pp)

    pred = tmp_path / "predictions.pt"
    logits = torch.randn(50, 10)
    io.save_artifact(pred, "predictions", {"logits": logits, "labels": torch.randint(0, 10, (50,))})
    flip_byte_in_storage(pred, logits.numel() * 4, offset=101)
    with pytest.raises(UserError, match=r"predictions.pt fails its checksum \(tensor logits changed\)"):
        io.load_artifact(pred, "predictions")


def test_ensemble_step_refuses_a_bit_flipped_predictions_file(tmp_path, capsys):
    paths = []
    labels = torch.randint(0, 10, (40,), generator=torch.Generator().manual_seed(0))
    for i in range(2):
        paths.append(tmp_path / f"p{i}.pt")
        io.save_artifact(paths[-1], "predictions", {"logits": torch.randn(40, 10), "labels": labels})
    flip_byte_in_storage(paths[1], 40 * 10 * 4, offset=17)
    out = tmp_path / "ens.json"
    rc = cli.main(["ensemble", "--predictions", *map(str, paths), "--group", "g", "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.count("\n") == 0 and "p1.pt fails its checksum (tensor logits" in err
    assert not out.exists()


def test_files_without_checksums_stay_readable(tmp_path):
    p = tmp_path / "old.pt"
    save_checkpoint(p, model(), CFG, META, epoch=1)
    rewrite(p, lambda o: o.pop("checksums"))
    ckpt = load_checkpoint(p)
    assert "checksums" not in ckpt and set(ckpt["state_dict"]) == set(model().state_dict())


def test_loaded_artifacts_have_no_checksum_entry_and_resave_cleanly(tmp_path):
    p = tmp_path / "c.pt"
    save_checkpoint(p, model(), CFG, META, epoch=1)
    raw = torch.load(p, weights_only=True)
    assert raw["checksums"]["algorithm"] == "crc32"
    assert set(raw["checksums"]["tensors"]) == {f"state_dict.{k}" for k in model().state_dict()}
    ckpt = load_checkpoint(p)
    assert "checksums" not in ckpt
    # a payload copied from a loaded artifact with changed tensors is hashed anew
    ckpt["state_dict"]["head.bias"] = ckpt["state_dict"]["head.bias"] + 1
    io.save_artifact(tmp_path / "d.pt", "checkpoint", {k: v for k, v in ckpt.items() if k != "format"})
    assert load_checkpoint(tmp_path / "d.pt")["epoch"] == 1


def test_resume_file_bit_flip_is_ignored_and_the_run_starts_over(tmp_path):
    from sparsebasin.training import resume

    p = tmp_path / ".resume.pt"
    m = model()
    resume.save(p, fingerprint="f", epoch=1, model=m.state_dict(), optimizer={}, schedule={}, rows=[])
    flip_byte_in_storage(p, m.state_dict()["hidden.1.weight"].numel() * 4)
    assert resume.load(p, "f", "run") is None


def test_a_changed_entry_other_than_a_tensor_is_refused(tmp_path):
    """The file's other values (epoch, sparsity report, provenance) are covered too: a flipped digit in the
    pickle that still unpickles is caught."""
    p = tmp_path / "final.pt"
    save_checkpoint(p, model(), CFG, META, epoch=7)
    rewrite(p, lambda o: o.__setitem__("epoch", 3))
    with pytest.raises(UserError, match=r"final.pt fails its checksum \(entry 'epoch' changed\)"):
        load_checkpoint(p)
    m = model()
    save_mask(tmp_path / "mask.pt", mask_of(m), CFG, META, {"requested": 0.5})
    rewrite(tmp_path / "mask.pt", lambda o: o["sparsity"].__setitem__("requested", 0.7))
    with pytest.raises(UserError, match=r"fails its checksum \(entry 'sparsity' changed\)"):
        load_mask(tmp_path / "mask.pt")


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


@pytest.mark.parametrize("kind", ["checkpoint", "mask", "predictions"])
def test_a_bit_flip_anywhere_in_a_small_artifact_is_refused_or_changes_nothing(tmp_path, kind):
    """Flip one bit at ~300 positions spread over the whole file (zip headers, pickle, storages, checksum
    record): the load either refuses it in one line, or returns exactly what was saved (a flip in zip
    padding or an unused record). The sweep over every byte, for both 0x01 and 0x80, found the same."""
    p = tmp_path / "a.pt"
    if kind == "checkpoint":
        save_checkpoint(p, torch.nn.Linear(3, 2), CFG, META, epoch=1)
    elif kind == "mask":
        save_mask(p, {"weight": torch.tensor([[True, False, True], [False, True, True]])}, CFG, META,
                  {"requested": 0.33})
    else:
        io.save_artifact(p, "predictions", {"logits": torch.randn(4, 3), "labels": torch.tensor([0, 1, 2, 0])})
    good = io.load_artifact(p, kind)
    data = p.read_bytes()
    refused = 0
    for i in range(0, len(data), max(1, len(data) // 300)):
        raw = bytearray(data)
        raw[i] ^= 0x01
        p.write_bytes(bytes(raw))
        try:
            got = io.load_artifact(p, kind)
        except UserError as exc:
            assert "\n" not in str(exc)
            refused += 1
            continue
        assert _same(good, got), f"a flip at byte {i} changed what loads"
    assert refused > 100
