"""Activation and weight matching recover a known permutation; statistics are right and NaN-free."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from sparsebasin.symmetry import permutation_spec, permute_state, random_perm
from sparsebasin.symmetry.matching import CrossStats, activation_matching, solve_assignment, weight_matching
from test_symmetry import ARCHS, example_input, make_model


@torch.no_grad()
def calibrate(model: nn.Module, x: torch.Tensor) -> nn.Module:
    """Keep every unit alive on ``x``: BN nets get running stats from train-mode forwards;
    BN-free nets get He-normal weights (PyTorch's default init shrinks the signal ~3x per layer,
    leaving deep units numerically constant) and each layer's bias centred on its mean
    pre-activation (data-dependent init)."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if bns:
        for m in bns:
            m.reset_running_stats()
            m.momentum = None
        model.train()
        model(x)
        model.eval()
        return model
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))][:-1]
    for layer in layers:
        nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
        seen = {}
        h = layer.register_forward_hook(lambda _m, _i, out: seen.update(out=out.detach().clone()))
        model(x)
        h.remove()
        out = seen["out"]
        dims = [0, 2, 3] if out.dim() == 4 else [0]
        layer.bias -= out.mean(dims) - 0.05 * out.std(dims)
    return model.eval()


def permuted_pair(arch: str, n: int, seed: int = 0):
    x = example_input(arch, n, seed=seed + 7)
    model = calibrate(make_model(arch, seed), x)
    spec = permutation_spec(model)
    perm = random_perm(spec, torch.Generator().manual_seed(seed + 11))
    copy = make_model(arch, seed + 1)
    copy.load_state_dict(permute_state(spec, perm, model.state_dict()))
    return model, copy.eval(), spec, perm, x


N_INPUTS = {"mlp": 64, "vgg11": 8, "resnet20": 8, "resnet50": 4}


@pytest.mark.parametrize("arch", [pytest.param(a, marks=pytest.mark.slow) if a in ("vgg11", "resnet50") else a
                                  for a in ARCHS])
def test_activation_matching_recovers_the_permutation(arch):
    model, copy, spec, perm, x = permuted_pair(arch, N_INPUTS[arch])
    batches = [(x[: len(x) // 2], None), (x[len(x) // 2:], None)]
    found, meta = activation_matching(model, copy, spec, batches, stat="correlation", max_batches=2)
    for g in spec.sizes:
        assert torch.equal(found[g], perm[g]), g
    assert meta["batches"] == 2 and meta["examples"] == len(x)
    assert meta["mean_correlation"] == pytest.approx(1.0, abs=1e-6)
    assert meta["mean_correlation_identity"] < 0.9
    assert set(meta["group_correlation"]) == set(spec.sizes)


def test_covariance_statistic_and_chunking_recover_the_permutation():
    model, copy, spec, perm, x = permuted_pair("resnet20", 8, seed=3)
    found, meta = activation_matching(model, copy, spec, [(x, None)], stat="covariance", chunk=3)
    assert meta["statistic"] == "covariance"
    assert all(torch.equal(found[g], perm[g]) for g in spec.sizes)


def test_cross_statistics_match_numpy():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(200, 5, generator=g) * 3 + 1
    b = torch.cat([a[:, :3] * 2 + 0.1 * torch.randn(200, 3, generator=g), torch.randn(200, 2, generator=g)], 1)
    st = CrossStats.zeros(5, torch.device("cpu"))
    st.update(a[:77], b[:77], rows=10)
    st.update(a[77:], b[77:])
    ref = np.corrcoef(a.double().numpy().T, b.double().numpy().T)[:5, 5:]
    np.testing.assert_allclose(st.correlation().numpy(), ref, atol=1e-10)
    cov = np.cov(a.double().numpy().T, b.double().numpy().T, bias=True)[:5, 5:]
    np.testing.assert_allclose(st.covariance().numpy(), cov, atol=1e-10)


def test_dead_units_give_zero_correlation_not_nan():
    a = torch.randn(50, 4)
    a[:, 1] = 0.0  # dead ReLU unit
    a[:, 2] = 3.0  # constant unit
    b = a[:, [3, 2, 1, 0]].clone()
    st = CrossStats.zeros(4, torch.device("cpu"))
    st.update(a, b)
    corr = st.correlation()
    assert torch.isfinite(corr).all()
    assert (corr[1] == 0).all() and (corr[2] == 0).all() and (corr[:, 1] == 0).all()
    assert st.dead_units() == (2, 2)
    perm = solve_assignment(corr)
    assert perm[0] == 3 and perm[3] == 0  # the live units are matched
    assert sorted(perm.tolist()) == [0, 1, 2, 3]


@pytest.mark.parametrize("arch", ["mlp", "vgg11", pytest.param("resnet20", marks=pytest.mark.slow)])
def test_weight_matching_recovers_the_permutation(arch):
    model, copy, spec, perm, _ = permuted_pair(arch, 8)
    found, meta = weight_matching(spec, model.state_dict(), copy.state_dict(), seed=0)
    assert all(torch.equal(found[g], perm[g]) for g in spec.sizes)
    assert meta["method"] == "weight" and meta["passes"] >= 2


@pytest.mark.slow
def test_weight_matching_recovers_the_resnet50_permutation():
    model, copy, spec, perm, _ = permuted_pair("resnet50", 2)
    found, _ = weight_matching(spec, model.state_dict(), copy.state_dict(), seed=1)
    assert all(torch.equal(found[g], perm[g]) for g in spec.sizes)
