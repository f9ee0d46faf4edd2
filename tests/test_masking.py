"""Masked weights stay exactly zero: at the start, through momentum and weight decay."""

from __future__ import annotations

import torch
from torch import nn

from sparsebasin import checkpoints
from sparsebasin.data.base import ArrayDataset, DatasetInfo
from sparsebasin.masking import BoundMask, apply_mask_, mask_grads_, mask_optimizer_state_, masked_nonzeros
from sparsebasin.models import build_model, prunable_keys
from sparsebasin.training import TrainConfig, fit

INFO = DatasetInfo(name="synthetic", num_classes=4, in_channels=1, input_shape=(12,), mean=(0.0,), std=(1.0,),
                   augment=False, flip=False)
META = {"name": "synthetic", "num_classes": 4, "in_channels": 1, "input_size": 12}
MLP_CFG = {"name": "mlp", "width": 1, "depth": 2, "hidden": 16}


def random_mask(model: nn.Module, density: float, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    params = dict(model.named_parameters())
    return {k: torch.rand(params[k].shape, generator=g) < density for k in prunable_keys(model)}


def synthetic(n: int, seed: int) -> ArrayDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 12, generator=g)
    y = (x[:, :4].argmax(1)).long()
    return ArrayDataset(INFO, x, y)


def test_apply_mask_zeroes_exactly_even_nan_and_negative():
    model = build_model(MLP_CFG, 4, 1, input_size=12)
    with torch.no_grad():
        model.hidden[0].weight[0, 0] = float("nan")
        model.hidden[0].weight[0, 1] = -3.0
    mask = checkpoints.full_mask(model)
    mask["hidden.0.weight"][0, :2] = False
    apply_mask_(model, mask)
    w = model.hidden[0].weight
    assert w[0, 0].item() == 0.0 and w[0, 1].item() == 0.0
    assert not torch.signbit(w[0, :2]).any()  # +0.0, not -0.0
    assert masked_nonzeros(model, mask) == 0


def test_grad_and_momentum_masking():
    torch.manual_seed(0)
    model = build_model(MLP_CFG, 4, 1, input_size=12)
    mask = random_mask(model, 0.3)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    model(torch.randn(8, 12)).sum().backward()
    opt.step()  # unmasked step: momentum buffers now dense
    model(torch.randn(8, 12)).sum().backward()
    mask_grads_(model, mask)
    mask_optimizer_state_(opt, model, mask)
    params = dict(model.named_parameters())
    for k, m in mask.items():
        assert torch.all(params[k].grad[~m] == 0)
        assert torch.all(opt.state[params[k]]["momentum_buffer"][~m] == 0)


def test_fit_keeps_masked_weights_zero_through_hundreds_of_steps(tmp_path):
    """320 steps of SGD with momentum 0.9 and weight decay: pruned weights stay exactly 0, mask unchanged."""
    torch.manual_seed(1)
    model = build_model(MLP_CFG, 4, 1, input_size=12)
    mask = random_mask(model, 0.2, seed=3)
    mask_before = {k: v.clone() for k, v in mask.items()}
    init = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = TrainConfig(epochs=20, lr=0.1, momentum=0.9, weight_decay=5e-3, batch_size=16)
    res = fit(model, synthetic(256, 0), synthetic(64, 1), cfg, out_dir=tmp_path, mask=mask, save_epochs=[0, 10],
              model_cfg=MLP_CFG, data_meta=META, run_name="masked", progress="log", write_predictions=False)
    assert all(torch.equal(mask[k], mask_before[k]) for k in mask)
    for name in ("final.pt", "ckpt/epoch0.pt", "ckpt/epoch10.pt"):
        sd = checkpoints.load_checkpoint(tmp_path / name)["state_dict"]
        for k, m in mask.items():
            assert torch.all(sd[k][~m] == 0), (name, k)
    final = checkpoints.load_checkpoint(tmp_path / "final.pt")
    for k, m in mask.items():
        assert not torch.equal(final["state_dict"][k][m], init[k][m])  # kept weights did train
    assert abs(res["density"] - checkpoints.mask_density(mask)) < 1e-12
    assert abs(final["mask_sparsity"] - (1 - res["density"])) < 1e-12
    assert masked_nonzeros(model, mask) == 0


def test_bound_mask_on_channels_last_resnet():
    """Conv weights in channels_last keep exact zeros after momentum + weight-decay steps."""
    torch.manual_seed(0)
    model = build_model({"name": "resnet20", "width": 1}, 4, 3).to(memory_format=torch.channels_last)
    mask = random_mask(model, 0.1)
    bound = BoundMask(model, mask)
    bound.apply_()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    x = torch.randn(8, 3, 8, 8).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 4, (8,))
    for _ in range(5):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        bound.mask_grads_()
        opt.step()
        bound.after_step_(opt)
    params = dict(model.named_parameters())
    for k, m in mask.items():
        assert torch.all(params[k][~m] == 0)
        assert torch.all(opt.state[params[k]]["momentum_buffer"][~m] == 0)
    assert masked_nonzeros(model, mask) == 0


def test_sgd_keeps_masked_weights_zero_without_a_per_step_remask_and_the_epoch_check_catches_drift():
    """Gradients masked by one foreach multiply; SGD with weight decay, momentum and Nesterov then leaves
    pruned weights and momentum exactly zero; check_ counts and zeroes weights that drifted anyway."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    mask = {n: torch.rand(p.shape) > 0.5 for n, p in model.named_parameters() if n.endswith("weight")}
    bound = BoundMask(model, mask)
    bound.apply_()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=True)
    for _ in range(20):
        loss = model(torch.randn(8, 6)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        bound.mask_grads_()
        opt.step()
    params = dict(model.named_parameters())
    for name, keep in mask.items():
        assert torch.all(params[name].detach()[~keep] == 0), name
        assert torch.all(opt.state[params[name]]["momentum_buffer"][~keep] == 0), name
    assert bound.check_(opt) == 0
    with torch.no_grad():
        params["0.weight"][~mask["0.weight"]] = 1.0
    assert bound.check_(opt) == int((~mask["0.weight"]).sum())
    assert torch.all(params["0.weight"].detach()[~mask["0.weight"]] == 0)
