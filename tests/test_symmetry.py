"""Permutation specs and applying permutations, on every architecture (CPU, small widths)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sparsebasin.errors import UserError
from sparsebasin.models import build_model, prunable_keys
from sparsebasin.symmetry import check_perm, identity_perm, invert, permutation_spec, permute_state, random_perm
from sparsebasin.symmetry.permfile import load_permutation, save_permutation

# name -> (cfg, num_classes, in_channels, input_size, example input shape)
ARCHS = {
    "mlp": ({"name": "mlp", "width": 1, "hidden": 8, "depth": 3}, 10, 1, 40, (40,)),
    "vgg11": ({"name": "vgg11", "width": 1}, 10, 3, 3 * 32 * 32, (3, 32, 32)),
    "resnet20": ({"name": "resnet20", "width": 1}, 10, 3, 3 * 32 * 32, (3, 32, 32)),
    "resnet50": ({"name": "resnet50", "width": 1}, 10, 3, 3 * 64 * 64, (3, 64, 64)),
}
DATA = {
    "mlp": {"name": "mnist1d", "num_classes": 10, "in_channels": 1, "input_size": 40},
    "vgg11": {"name": "cifar10", "num_classes": 10, "in_channels": 3, "input_size": 3072},
    "resnet20": {"name": "cifar10", "num_classes": 10, "in_channels": 3, "input_size": 3072},
    "resnet50": {"name": "imagenet", "num_classes": 10, "in_channels": 3, "input_size": 12288},
}
_CACHE: dict = {}


def make_model(arch: str, seed: int = 0) -> nn.Module:
    cfg, classes, in_ch, size, _ = ARCHS[arch]
    torch.manual_seed(seed)
    model = build_model(cfg, classes, in_ch, input_size=size)
    randomise_bn(model, seed)
    return model.eval()


def randomise_bn(model: nn.Module, seed: int) -> None:
    """Non-trivial BN affine parameters and running statistics (positive bias keeps units alive)."""
    g = torch.Generator().manual_seed(seed + 1000)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            with torch.no_grad():
                m.weight.copy_(0.5 + torch.rand(n, generator=g))
                m.bias.copy_(0.1 + 0.4 * torch.rand(n, generator=g))
                m.running_mean.copy_(0.1 * torch.randn(n, generator=g))
                m.running_var.copy_(0.5 + torch.rand(n, generator=g))


def example_input(arch: str, n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn((n,) + ARCHS[arch][4], generator=torch.Generator().manual_seed(seed))


def cached(arch: str):
    if arch not in _CACHE:
        model = make_model(arch)
        _CACHE[arch] = (model, permutation_spec(model))
    return _CACHE[arch]


@pytest.mark.parametrize("arch", list(ARCHS))
def test_spec_covers_every_key_with_consistent_sizes(arch):
    model, spec = cached(arch)
    sd = model.state_dict()
    assert set(spec.axes) == set(sd)
    for key, groups in spec.axes.items():
        assert len(groups) == sd[key].dim()
        for axis, g in enumerate(groups):
            if g is not None:
                assert sd[key].shape[axis] == spec.sizes[g], (key, axis, g)
    # the derived inverse view lists each (key, axis) exactly once
    pairs = [p for lst in spec.group_axes.values() for p in lst]
    assert len(pairs) == len(set(pairs))
    assert all(spec.group_axes[g] for g in spec.sizes)
    # input and class outputs are never permuted
    first = [k for k in sd if k.endswith("weight")][0]
    assert spec.axes[first][1] is None
    head = {"mlp": "head", "vgg11": "classifier", "resnet20": "fc", "resnet50": "fc"}[arch]
    assert spec.axes[f"{head}.weight"][0] is None and spec.axes[f"{head}.bias"] == (None,)
    assert set(spec.match_points) == set(spec.sizes)
    modules = dict(model.named_modules())
    assert all(name in modules for name, _ in spec.match_points.values())


def test_resnet20_groups_follow_the_protocol():
    _, spec = cached("resnet20")
    assert spec.sizes["res1"] == 16 and spec.sizes["res2"] == 32 and spec.sizes["res3"] == 64
    assert len([g for g in spec.sizes if g.startswith("layer")]) == 9
    res1 = set(spec.group_axes["res1"])
    assert ("conv1.weight", 0) in res1 and ("bn1.running_var", 0) in res1
    assert ("layer1.2.bn2.bias", 0) in res1
    assert ("layer2.0.conv1.weight", 1) in res1 and ("layer2.0.shortcut.0.weight", 1) in res1
    res2 = set(spec.group_axes["res2"])
    assert ("layer2.0.shortcut.0.weight", 0) in res2 and ("layer2.0.shortcut.1.running_mean", 0) in res2
    assert ("layer2.1.conv1.weight", 1) in res2 and ("layer3.0.conv1.weight", 1) in res2
    assert ("fc.weight", 1) in set(spec.group_axes["res3"])
    assert spec.axes["layer1.0.bn1.num_batches_tracked"] == ()
    inner = set(spec.group_axes["layer2.1"])
    assert inner == {("layer2.1.conv1.weight", 0), ("layer2.1.conv2.weight", 1)} | {
        (f"layer2.1.bn1.{k}", 0) for k in ("weight", "bias", "running_mean", "running_var")
    }
    assert spec.match_points["res2"] == ("layer2", False)
    assert spec.match_points["layer2.1"] == ("layer2.1.bn1", True)


def test_resnet50_groups():
    _, spec = cached("resnet50")
    assert spec.sizes["stem"] == 64
    assert [spec.sizes[f"res{s}"] for s in (1, 2, 3, 4)] == [256, 512, 1024, 2048]
    assert len([g for g in spec.sizes if "inner" in g]) == 2 * (3 + 4 + 6 + 3)
    assert ("layer1.0.downsample.0.weight", 1) in set(spec.group_axes["stem"])
    assert ("layer3.0.downsample.1.bias", 0) in set(spec.group_axes["res3"])


@pytest.mark.parametrize("arch", list(ARCHS))
def test_random_permutation_preserves_function(arch):
    model, spec = cached(arch)
    x = example_input(arch, 2 if arch == "resnet50" else 4)
    with torch.no_grad():
        y = model(x)
        perm = random_perm(spec, torch.Generator().manual_seed(1))
        other = make_model(arch, seed=5)
        other.load_state_dict(permute_state(spec, perm, model.state_dict()))
        other.eval()
        y2 = other(x)
    assert not torch.equal(other.state_dict()[next(iter(spec.axes))], model.state_dict()[next(iter(spec.axes))])
    rel = (y - y2).abs().max() / y.abs().max()
    assert rel < 1e-5, float(rel)


@pytest.mark.parametrize("arch", ["mlp", "resnet20", "vgg11"])
def test_masks_and_inverse(arch):
    model, spec = cached(arch)
    g = torch.Generator().manual_seed(3)
    perm = random_perm(spec, g)
    sd = model.state_dict()
    keys = prunable_keys(model)
    mask = {k: torch.rand(sd[k].shape, generator=g) < 0.3 for k in keys}
    pmask = permute_state(spec, perm, mask, source="mask")
    pw = permute_state(spec, perm, {k: sd[k] for k in keys})
    masked = permute_state(spec, perm, {k: sd[k] * mask[k] for k in keys})
    for k in keys:
        assert pmask[k].dtype == torch.bool
        assert int(pmask[k].sum()) == int(mask[k].sum())  # per-layer density unchanged
        assert torch.equal(pw[k] * pmask[k], masked[k])
    assert any(not torch.equal(pmask[k], mask[k]) for k in keys)
    # inverse(apply(x)) == x for state dict, mask, momentum buffers
    momentum = {k: torch.randn(p.shape, generator=g) for k, p in model.named_parameters()}
    for obj in (sd, mask, momentum):
        back = permute_state(spec, perm, permute_state(spec, perm, obj), inverse=True)
        assert back.keys() == obj.keys()
        assert all(torch.equal(back[k], obj[k]) for k in obj)
    back = permute_state(spec, invert(perm), permute_state(spec, perm, sd))
    assert all(torch.equal(back[k], sd[k]) for k in sd)


def test_index_convention():
    _, spec = cached("mlp")
    perm = identity_perm(spec)
    perm["hidden.0"] = torch.roll(torch.arange(8), 1)  # new position i holds old unit i-1
    w = torch.arange(8 * 40, dtype=torch.float32).view(8, 40)
    out = permute_state(spec, perm, {"hidden.0.weight": w})["hidden.0.weight"]
    assert torch.equal(out[0], w[7]) and torch.equal(out[1], w[0])


def test_check_perm_rejects_bad_permutations():
    _, spec = cached("mlp")
    good = random_perm(spec)
    assert check_perm(spec, good).keys() == spec.sizes.keys()
    bad = dict(good)
    bad["hidden.0"] = torch.zeros(8, dtype=torch.int64)
    with pytest.raises(UserError, match="repeats an index"):
        check_perm(spec, bad, "p.pt")
    bad["hidden.0"] = torch.arange(7)
    with pytest.raises(UserError, match="length 7, expected 8"):
        check_perm(spec, bad, "p.pt")
    bad = {g: p for g, p in good.items() if g != "hidden.1"}
    with pytest.raises(UserError, match="lacks group 'hidden.1'"):
        check_perm(spec, bad, "p.pt")
    _, rspec = cached("resnet20")
    with pytest.raises(UserError, match="another architecture"):
        check_perm(spec, random_perm(rspec), "p.pt")
    with pytest.raises(UserError, match="another architecture"):
        permute_state(spec, good, {"conv1.weight": torch.zeros(16, 3, 3, 3)}, source="ckpt.pt")
    bad = dict(good)
    bad["hidden.0"] = torch.arange(8.0)
    with pytest.raises(UserError, match="integer index"):
        check_perm(spec, bad, "p.pt")


def test_permutation_file_roundtrip_and_validation(tmp_path):
    model, spec = cached("resnet20")
    perm = random_perm(spec, torch.Generator().manual_seed(0))
    path = tmp_path / "perm.pt"
    save_permutation(path, perm, {"name": "resnet20", "width": 1}, DATA["resnet20"], {"method": "activation"}, {"x": 1})
    obj, spec2 = load_permutation(path)
    assert spec2.sizes == spec.sizes
    assert all(torch.equal(obj["perm"][g], perm[g]) for g in perm)
    assert obj["meta"]["method"] == "activation" and obj["provenance"] == {"x": 1}
    raw = torch.load(path, weights_only=False)
    raw["perm"]["res2"][0] = raw["perm"]["res2"][1]
    raw.pop("checksums")  # as another tool would write it (an edited sparsebasin file fails its checksum first)
    torch.save(raw, path)
    with pytest.raises(UserError, match=r"perm\.pt group 'res2' repeats an index"):
        load_permutation(path)
    # a width-2 model's spec rejects a width-1 permutation
    save_permutation(path, perm, {"name": "resnet20", "width": 1}, DATA["resnet20"], {})
    wide = build_model({"name": "resnet20", "width": 2}, 10, 3)
    with pytest.raises(UserError, match="expected 32"):
        load_permutation(path, permutation_spec(wide))
