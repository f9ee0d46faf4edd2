"""Checkpoints and masks are validated against the architecture they claim."""

import pytest
import torch

from sparsebasin import checkpoints as ck
from sparsebasin.errors import UserError
from sparsebasin.models import build_model, prunable_keys

DATA = {"name": "cifar10", "num_classes": 10, "in_channels": 3, "input_size": 3072}


def _resnet(width=1):
    torch.manual_seed(0)
    return build_model({"name": "resnet20", "width": width}, 10, 3)


def test_checkpoint_roundtrip_rebuilds_model(tmp_path):
    m = _resnet()
    ck.save_checkpoint(tmp_path / "c.pt", m, {"name": "resnet20", "width": 1}, DATA, epoch=3)
    m2 = ck.model_from_checkpoint(tmp_path / "c.pt")
    for (k, a), (_, b) in zip(m.state_dict().items(), m2.state_dict().items()):
        assert torch.equal(a, b), k
    assert ck.load_checkpoint(tmp_path / "c.pt")["epoch"] == 3


def test_checkpoint_of_other_width_is_rejected(tmp_path):
    ck.save_checkpoint(tmp_path / "w2.pt", _resnet(2), {"name": "resnet20", "width": 2}, DATA, epoch=0)
    sd = ck.load_checkpoint(tmp_path / "w2.pt")["state_dict"]
    with pytest.raises(UserError, match=r"has shape .*another width"):
        ck.check_state_dict(sd, _resnet(1), "w2.pt")


def test_checkpoint_of_other_architecture_is_rejected():
    vgg = build_model({"name": "vgg11", "width": 1}, 10, 3)
    with pytest.raises(UserError, match="another architecture"):
        ck.check_state_dict(vgg.state_dict(), _resnet(), "vgg.pt")


def test_mask_validation(tmp_path):
    m = _resnet()
    mask = ck.full_mask(m)
    assert set(mask) == set(prunable_keys(m)) and ck.mask_density(mask) == 1.0
    ck.save_mask(tmp_path / "mask.pt", mask, {"name": "resnet20", "width": 1}, DATA)
    assert set(ck.load_mask(tmp_path / "mask.pt", m)["mask"]) == set(mask)

    bad = dict(mask)
    bad["fc.weight"] = bad["fc.weight"].float()
    with pytest.raises(UserError, match="not a boolean tensor"):
        ck.check_mask(bad, m, "bad.pt")
    with pytest.raises(UserError, match="not a parameter of the model"):
        ck.check_mask({"nope.weight": torch.ones(1, dtype=torch.bool)}, m, "bad.pt")
    with pytest.raises(UserError, match="has shape"):
        ck.check_mask(ck.full_mask(_resnet(2)), m, "bad.pt")
    with pytest.raises(UserError, match="no mask entries"):
        ck.check_mask({}, m, "bad.pt")


def test_same_architecture():
    a = {"model": {"name": "resnet20", "width": 1}, "data": DATA}
    b = {"model": {"name": "resnet20", "width": 4}, "data": DATA}
    ck.same_architecture(a, dict(a), "a", "a2")
    with pytest.raises(UserError, match="different models"):
        ck.same_architecture(a, b, "a.pt", "b.pt")
