"""Global magnitude pruning, IMP schedules and sparsity reports (no training)."""

import math

import pytest
import torch

from sparsebasin.checkpoints import full_mask
from sparsebasin.errors import UserError
from sparsebasin.models import build_model, prunable_keys
from sparsebasin.pruning import (
    branch_rounds,
    fmt_sparsity,
    global_magnitude_mask,
    imp_schedule,
    kept_count,
    lineage,
    mask_counts,
    prune_to,
    select_keys,
    sparsity_report,
    training_epochs,
)


def _mlp(seed=0):
    torch.manual_seed(seed)
    return build_model({"name": "mlp", "hidden": 16}, num_classes=10, in_channels=1, input_size=40)


def _weights(model):
    return {k: v.detach() for k, v in model.named_parameters()}


def test_fmt_sparsity():
    assert [fmt_sparsity(s) for s in (0.8, 0.9, 0.95, 0.97, 0.5)] == ["0.8", "0.9", "0.95", "0.97", "0.5"]


@pytest.mark.parametrize("target", [0.1, 0.5, 0.8, 0.9, 0.95, 0.97, 0.999])
def test_prune_to_hits_target_exactly(target):
    model = _mlp()
    mask = prune_to(_weights(model), full_mask(model), target)
    kept, total = mask_counts(mask)
    assert kept == kept_count(target, total)
    assert abs((1 - kept / total) - target) <= 1 / total  # within one weight


def test_kept_magnitudes_dominate_pruned_ones():
    model = _mlp()
    w = _weights(model)
    mask = full_mask(model)
    for s in (0.2, 0.36, 0.9):  # nested rounds, each from the previous mask
        new = prune_to(w, mask, s)
        kept = torch.cat([w[k][new[k]].abs() for k in new])
        pruned_now = torch.cat([w[k][mask[k] & ~new[k]].abs() for k in new])
        assert kept.min() >= pruned_now.max()
        assert all(bool((new[k] <= mask[k]).all()) for k in new)  # nested
        mask = new


def test_ties_broken_deterministically_by_position():
    w = {"a": torch.ones(6), "b": torch.ones(4)}
    m = {"a": torch.ones(6, dtype=torch.bool), "b": torch.ones(4, dtype=torch.bool)}
    out = global_magnitude_mask(w, m, 7)
    assert out["a"].all() and out["b"].tolist() == [True, False, False, False]
    again = global_magnitude_mask(w, m, 7)
    assert all(torch.equal(out[k], again[k]) for k in out)


def test_pruned_weights_never_revive():
    # a pruned position holding a large value (e.g. not zeroed) stays pruned
    w = {"a": torch.tensor([10.0, 1.0, 2.0, 3.0])}
    m = {"a": torch.tensor([False, True, True, True])}
    out = global_magnitude_mask(w, m, 2)
    assert out["a"].tolist() == [False, False, True, True]


def test_cannot_prune_below_current_sparsity():
    model = _mlp()
    mask = prune_to(_weights(model), full_mask(model), 0.9)
    with pytest.raises(UserError, match="already sparser"):
        prune_to(_weights(model), mask, 0.5)


def test_select_keys_default_include_exclude():
    model = _mlp()
    assert select_keys(model) == prunable_keys(model) == ["hidden.0.weight", "hidden.1.weight", "head.weight"]
    assert select_keys(model, exclude=["head.*"]) == ["hidden.0.weight", "hidden.1.weight"]
    assert select_keys(model, include=["hidden.*"]) == ["hidden.0.weight", "hidden.0.bias", "hidden.1.weight", "hidden.1.bias"]
    with pytest.raises(UserError, match="--prune-exclude 'nope'"):
        select_keys(model, exclude=["nope"])
    with pytest.raises(UserError, match="no prunable parameters"):
        select_keys(model, exclude=["*"])


def test_resnet_shortcuts_and_bn_never_pruned_by_default():
    model = build_model({"name": "resnet20", "width": 1}, num_classes=10, in_channels=3)
    keys = select_keys(model)
    assert not any("shortcut" in k or "bn" in k or k.endswith(".bias") for k in keys)
    mask = prune_to(_weights(model), {k: full_mask(model, keys)[k] for k in keys}, 0.9)
    rep = sparsity_report(model, mask, 0.9)
    sc = rep["layers"]["layer2.0.shortcut.0.weight"]
    assert sc["prunable"] is False and sc["kept"] == sc["numel"] and sc["sparsity"] == 0.0
    assert rep["all"]["realised"] < rep["prunable"]["realised"]


def test_sparsity_report_totals():
    model = _mlp()
    mask = prune_to(_weights(model), full_mask(model), 0.8)
    rep = sparsity_report(model, mask, 0.8)
    n_all = sum(p.numel() for p in model.parameters())
    n_pr = sum(m.numel() for m in mask.values())
    assert rep["prunable"]["numel"] == n_pr and rep["all"]["numel"] == n_all
    assert rep["prunable"]["kept"] == rep["prunable"]["requested_kept"] == kept_count(0.8, n_pr)
    assert rep["all"]["pruned"] == rep["prunable"]["pruned"]
    assert math.isclose(rep["all"]["requested"], 0.8 * n_pr / n_all)
    assert rep["layers"]["hidden.0.bias"]["prunable"] is False
    assert rep["keys"] == list(mask)


def test_schedule_chain_and_per_target():
    targets = [0.8, 0.9, 0.95, 0.97]
    chain = imp_schedule(targets, 0.2, chain=True)
    alone = imp_schedule(targets, 0.2, chain=False)
    assert [r.round for r in chain] == list(range(1, 20))
    assert training_epochs(chain, 50) == 950 and training_epochs(alone, 50) == 2450
    br = branch_rounds(chain)
    assert sorted(br) == targets and all(br[t].sparsity == t for t in targets)
    # each branch sits on the deepest chain round strictly below its target
    for t, r in br.items():
        parent = next(x for x in chain if x.round == r.parent)
        assert parent.kind == "chain" and parent.sparsity < t <= parent.sparsity + 0.2 * (1 - parent.sparsity) + 1e-12
    assert [chain[i - 1].sparsity for i in lineage(chain, br[0.9].round)][-1] == 0.9
    assert len(lineage(chain, br[0.9].round)) == 11
    # per target: 8 + 11 + 14 + 16 rounds, each its own chain from the dense model
    assert [len(lineage(alone, r.round)) for r in branch_rounds(alone).values()] == [8, 11, 14, 16]


def test_schedule_target_on_a_nominal_round_is_not_duplicated():
    s = imp_schedule([0.36], 0.2, chain=True)  # 1 - 0.8**2 == 0.36 up to float error
    assert [(r.kind, r.sparsity) for r in s] == [("chain", 0.2), ("branch", 0.36)]
    s = imp_schedule([0.1], 0.2)
    assert [(r.kind, r.parent) for r in s] == [("branch", 0)]


@pytest.mark.parametrize("bad", [[], [0.0], [1.0], [1.5]])
def test_schedule_rejects_bad_targets(bad):
    with pytest.raises(UserError):
        imp_schedule(bad, 0.2)


def test_schedule_rejects_bad_rate():
    with pytest.raises(UserError, match="--rate"):
        imp_schedule([0.8], 1.0)
