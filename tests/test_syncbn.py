"""sparsebasin.syncbn: BatchNorm over the global batch of 2 gloo processes = nn.BatchNorm on the whole batch."""

from __future__ import annotations

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from sparsebasin.syncbn import SyncBatchNorm, convert

pytestmark = pytest.mark.slow


def _layer(seed: int = 0) -> nn.BatchNorm2d:
    torch.manual_seed(seed)
    bn = nn.BatchNorm2d(3, momentum=0.3)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-1, 1)
    return bn


def _data():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(8, 3, 5, 5, generator=g) * 3 + 40  # a large mean: the variance must not cancel away
    return x, torch.randn(8, 3, 5, 5, generator=g)


def _rank(rank: int, init: str, out: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    x, dy = _data()
    part = slice(rank * 4, rank * 4 + 4)
    model = convert(nn.Sequential(_layer()))
    assert isinstance(model[0], SyncBatchNorm)
    xs = x[part].clone().requires_grad_(True)
    for _ in range(2):  # two steps: the running statistics follow the global batch's
        y = model(xs)
    (y * dy[part]).sum().backward()
    grads = [model[0].weight.grad.clone(), model[0].bias.grad.clone()]
    for g in grads:
        dist.all_reduce(g)  # what DDP does with the ranks' parameter gradients (sums here: the losses are sums)
    torch.save({"y": y.detach(), "dx": xs.grad, "dw": grads[0], "db": grads[1], "mean": model[0].running_mean,
                "var": model[0].running_var, "n": model[0].num_batches_tracked}, f"{out}.{rank}")
    dist.barrier()
    dist.destroy_process_group()


def test_two_ranks_normalise_like_one_batch(tmp_path):
    mp.spawn(_rank, args=(f"file://{tmp_path / 'rendezvous'}", str(tmp_path / "out")), nprocs=2)
    x, dy = _data()
    bn = _layer()
    xr = x.clone().requires_grad_(True)
    for _ in range(2):
        y = bn(xr)
    (y * dy).sum().backward()
    ranks = [torch.load(tmp_path / f"out.{r}") for r in (0, 1)]
    assert torch.allclose(torch.cat([r["y"] for r in ranks]), y, atol=1e-5)
    assert torch.allclose(torch.cat([r["dx"] for r in ranks]), xr.grad, atol=1e-5)
    for r in ranks:
        assert torch.allclose(r["dw"], bn.weight.grad, rtol=1e-4, atol=1e-4)
        assert torch.allclose(r["db"], bn.bias.grad, rtol=1e-4, atol=1e-4)
        assert torch.allclose(r["mean"], bn.running_mean, rtol=1e-5)
        assert torch.allclose(r["var"], bn.running_var, rtol=1e-4)
        assert int(r["n"]) == 2


def test_convert_keeps_the_parameters_and_one_process_is_plain_batchnorm():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.Sequential(nn.BatchNorm2d(3)), nn.ReLU())
    params, buffers = list(model.parameters()), list(model.buffers())
    x = torch.randn(4, 2, 6, 6)
    ref = model(x)
    convert(model)
    assert isinstance(model[1][0], SyncBatchNorm)
    assert all(a is b for a, b in zip(model.parameters(), params)) and all(a is b for a, b in zip(model.buffers(), buffers))
    model.load_state_dict(model.state_dict())  # same keys
    model[1][0].reset_running_stats()
    assert torch.equal(model(x), ref)  # no process group: nn.BatchNorm's own path
