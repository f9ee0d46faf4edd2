"""Linear mode connectivity: interpolation, barriers, BN reset, REPAIR, the plane; matching lowers the
MNIST-1D barrier."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sparsebasin.data import batches, sample_split, dataset_info, mnist1d
from sparsebasin.data.base import ArrayDataset
from sparsebasin.models import build_model
from sparsebasin.symmetry import permutation_spec
from sparsebasin.symmetry.lmc import (EvalConfig, Repair, alpha_grid, barriers, channel_stats, combine_states, lmc,
                                      mix_state, plane, plane_geometry, plane_grid, repair_points, reset_bn_stats)
from sparsebasin.symmetry.matching import activation_matching
from test_symmetry import make_model

CPU = torch.device("cpu")


def synthetic(arch_shape, n, seed=0, classes=10):
    """A small ArrayDataset of random inputs (CIFAR-shaped uint8 images or MNIST-1D-like floats)."""
    g = torch.Generator().manual_seed(seed)
    if arch_shape == "image":
        info = dataset_info("cifar10")
        x = torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)
    else:
        info = dataset_info("mnist1d")
        x = torch.randn(n, 40, generator=g)
    return ArrayDataset(info, x, torch.randint(0, classes, (n,), generator=g))


def test_mix_and_combine():
    a = {"w": torch.zeros(3), "running_var": torch.ones(2), "n": torch.tensor(3)}
    b = {"w": torch.ones(3) * 2, "running_var": torch.ones(2) * 3, "n": torch.tensor(7)}
    assert torch.equal(mix_state(a, b, 0.0)["w"], a["w"]) and torch.equal(mix_state(a, b, 1.0)["w"], b["w"])
    assert torch.allclose(mix_state(a, b, 0.25)["w"], torch.full((3,), 0.5))
    assert mix_state(a, b, 0.5)["n"] == 7
    assert (combine_states([a, b], [3.0, -2.0])["running_var"] == 0).all()  # clamped, never negative
    assert alpha_grid(11)[0] == 0.0 and alpha_grid(11)[-1] == 1.0 and len(alpha_grid(11)) == 11


def test_barriers_from_rows():
    rows = []
    for a in alpha_grid(5):
        for split in ("train", "test"):
            loss = 1.0 + a + 4 * a * (1 - a)  # chord from 1 to 2, bump of 1 at 0.5
            err = 0.1 if split == "train" else 0.2 + 0.1 * a
            rows.append({"alpha": a, "mode": "plain", "permuted": True, "split": split, "loss": loss, "acc": 1 - err,
                         "error": err})
    out = {(b["split"]): b for b in barriers(rows)}
    assert out["train"]["loss_barrier"] == pytest.approx(1.0) and out["train"]["alpha_loss_max"] == 0.5
    assert out["test"]["error_barrier"] == pytest.approx(0.0, abs=1e-12)
    assert out["train"]["loss_a"] == 1.0 and out["train"]["loss_b"] == 2.0


def test_bn_reset_recomputes_running_stats():
    model = make_model("resnet20")
    ds = synthetic("image", 12)
    cfg = EvalConfig(device=CPU, batch_size=4, reset_batches=2)
    assert reset_bn_stats(model, ds, cfg)
    seen = []
    h = model.conv1.register_forward_hook(lambda _m, _i, out: seen.append(out.mean((0, 2, 3))))
    sample, info = sample_split(ds, 8, seed=0)  # BN reset uses a seeded random sample, not the first batches
    with torch.no_grad():
        for x, _ in batches(sample, 4, shuffle=False):
            model(x)
    h.remove()
    assert cfg.samples["statistics"] == info and info["examples"] == 8
    assert torch.allclose(model.bn1.running_mean, torch.stack(seen).mean(0), atol=1e-5)
    assert int(model.bn1.num_batches_tracked) == 2 and not model.training
    assert model.bn1.momentum == 0.1  # restored
    assert not reset_bn_stats(build_model({"name": "mlp", "hidden": 4}, 10, 1, input_size=40), ds, cfg)


def test_repair_matches_target_statistics():
    torch.manual_seed(0)
    model = build_model({"name": "mlp", "hidden": 6, "depth": 2}, 10, 1, input_size=40).eval()
    spec = permutation_spec(model)
    ds = synthetic("flat", 256)
    cfg = EvalConfig(device=CPU, batch_size=256, reset_batches=1)
    points = repair_points(model, spec)
    assert points == ["hidden.0", "hidden.1"]
    g = torch.Generator().manual_seed(1)
    targets = {p: (torch.randn(6, generator=g, dtype=torch.float64), 0.5 + torch.rand(6, generator=g, dtype=torch.float64))
               for p in points}
    with Repair(model, targets) as rep:
        rep.fit(ds, cfg)
        got = channel_stats(model, points, ds, cfg)
    # the first point is exact up to biased vs unbiased variance; later points see inputs corrected
    # with batch statistics while fitting but running statistics afterwards, hence looser tolerances
    assert torch.allclose(got["hidden.0"][0], targets["hidden.0"][0], atol=1e-5)
    assert torch.allclose(got["hidden.0"][1], targets["hidden.0"][1], rtol=3e-3)
    assert torch.allclose(got["hidden.1"][0], targets["hidden.1"][0], atol=1e-2)
    assert torch.allclose(got["hidden.1"][1], targets["hidden.1"][1], rtol=1e-2)
    assert not model._forward_hooks and not model.hidden[0]._forward_hooks  # hooks removed


@pytest.mark.parametrize("arch", ["vgg11", "resnet20"])
def test_all_modes_run_on_conv_nets(arch):
    a, b = make_model(arch, 0), make_model(arch, 1)
    spec = permutation_spec(a)
    ds = synthetic("image", 8)
    cfg = EvalConfig(device=CPU, batch_size=4, eval_batches=1, reset_batches=1)
    rows = lmc(a, spec, a.state_dict(), b.state_dict(), None, [0.0, 0.5, 1.0], ["plain", "bn_reset", "repair"], ds,
               {"test": ds}, cfg)
    assert len(rows) == 9
    assert all(math.isfinite(r["loss"]) and 0 <= r["acc"] <= 1 for r in rows)
    if arch == "vgg11":  # no BN: bn_reset is plain
        plain = [r["loss"] for r in rows if r["mode"] == "plain"]
        assert plain == [r["loss"] for r in rows if r["mode"] == "bn_reset"]
    expected = 8 if arch == "vgg11" else 1 + 9 * 2 + 2
    assert len(repair_points(a, spec)) == expected


def test_plane_geometry_reconstructs_anchors():
    g = torch.Generator().manual_seed(0)
    sds = [{"w": torch.randn(5, 3, generator=g, dtype=torch.float64), "b": torch.randn(3, generator=g, dtype=torch.float64)}
           for _ in range(3)]
    geom = plane_geometry(*sds, keys=["w", "b"])
    for name, sd in zip(("origin", "p1", "p2"), sds):
        u, v = geom.anchors()[name]
        rec = combine_states(sds, geom.coefficients(u, v))
        assert all(torch.allclose(rec[k], sd[k]) for k in sd)
    # the (u, v) basis is orthonormal: distances in the plane are distances in weight space
    p = combine_states(sds, geom.coefficients(0.3, 0.7))
    dist = math.sqrt(sum(float(((p[k] - sds[0][k]) ** 2).sum()) for k in ("w", "b")))
    assert dist == pytest.approx(math.hypot(0.3, 0.7))
    pts = plane_grid(geom, 5, 0.1)
    assert len(pts) == 25
    us = [q[0] for q in pts]
    assert min(us) < min(0, geom.p2_u) and max(us) > max(geom.norm1, geom.p2_u)


def test_plane_rows():
    models = [build_model({"name": "mlp", "hidden": 4}, 10, 1, input_size=40) for _ in range(3)]
    ds = synthetic("flat", 64)
    cfg = EvalConfig(device=CPU, batch_size=64, eval_batches=1, reset_batches=1)
    rows, geom = plane(models[0], *[m.state_dict() for m in models], grid=3, margin=0.2, mode="plain",
                       train_ds=ds, eval_sets={"test": ds}, cfg=cfg)
    assert len(rows) == 9 + 3
    assert [r["point"] for r in rows[-3:]] == ["origin", "p1", "p2"]
    assert all(r["point"] == "" for r in rows[:9])
    assert set(rows[0]) == {"point", "u", "v", "mode", "split", "loss", "acc", "error"}


# ------------------------------------------------------------- MNIST-1D: matching lowers the barrier --

@pytest.fixture(scope="module")
def mnist1d_small(tmp_path_factory):
    root = tmp_path_factory.mktemp("mnist1d")
    config = mnist1d.MNIST1DConfig(n_train=4000, n_test=1000, seed=0)
    return mnist1d.load("mnist1d", root, "train", config), mnist1d.load("mnist1d", root, "test", config)


def train_mlp(train, seed: int, epochs: int = 12) -> nn.Module:
    """A plain SGD loop (independent of the trainer)."""
    torch.manual_seed(seed)
    model = build_model({"name": "mlp", "hidden": 64, "depth": 2}, 10, 1, input_size=40)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for epoch in range(epochs):
        for x, y in batches(train, 100, shuffle=True, data_seed=seed, epoch=epoch):
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
    return model.eval()


@pytest.mark.slow
def test_matching_lowers_the_mnist1d_barrier(mnist1d_small):
    train, test = mnist1d_small
    a, b = train_mlp(train, 1), train_mlp(train, 2)
    spec = permutation_spec(a)
    perm, meta = activation_matching(a, b, spec, batches(train, 500, shuffle=False), max_batches=8)
    assert meta["mean_correlation"] > meta["mean_correlation_identity"] + 0.2
    cfg = EvalConfig(device=CPU, batch_size=1000, reset_batches=4)
    rows = lmc(a, spec, a.state_dict(), b.state_dict(), perm, alpha_grid(11), ["plain", "repair"], train,
               {"train": train, "test": test}, cfg)
    bars = {(r["mode"], r["permuted"], r["split"]): r for r in barriers(rows)}
    for split in ("train", "test"):
        plain, matched = bars[("plain", False, split)], bars[("plain", True, split)]
        assert matched["loss_barrier"] < plain["loss_barrier"], (split, matched, plain)
        assert matched["error_barrier"] < plain["error_barrier"]
        assert bars[("repair", True, split)]["loss_barrier"] < plain["loss_barrier"]
    # the endpoints of both paths are the same functions
    ends = [r for r in rows if r["mode"] == "plain" and r["alpha"] == 0.0 and r["split"] == "test"]
    assert ends[0]["loss"] == pytest.approx(ends[1]["loss"], rel=1e-5)
    print({k: round(v["loss_barrier"], 4) for k, v in bars.items()})
