"""Parameter counts computed by hand from each definition, and forward shapes."""

import pytest
import torch

from sparsebasin.errors import UserError
from sparsebasin.models import build_model, prunable_keys


def _count(model, keys=None):
    params = dict(model.named_parameters())
    return sum(p.numel() for k, p in params.items() if keys is None or k in keys)


def resnet20_by_hand(w: int, classes: int, in_ch: int = 3) -> tuple[int, int]:
    c1, c2, c3 = 16 * w, 32 * w, 64 * w
    conv = lambda i, o: i * o * 9  # noqa: E731
    prunable = conv(in_ch, c1)
    prunable += 6 * conv(c1, c1)
    prunable += conv(c1, c2) + 5 * conv(c2, c2)
    prunable += conv(c2, c3) + 5 * conv(c3, c3)
    prunable += c3 * classes
    shortcuts = conv(c1, c2) + conv(c2, c3)
    bn = 2 * (c1 + 6 * c1 + 7 * c2 + 7 * c3)  # stem + 6 per stage (+1 shortcut BN in stages 2, 3)
    return prunable + shortcuts + bn + classes, prunable


def vgg11_by_hand(w: int, classes: int, in_ch: int = 3) -> tuple[int, int]:
    widths = [c * w for c in (64, 128, 256, 256, 512, 512, 512, 512)]
    total = prunable = 0
    prev = in_ch
    for c in widths:
        prunable += prev * c * 9
        total += prev * c * 9 + c
        prev = c
    prunable += prev * classes
    total += prev * classes + classes
    return total, prunable


def test_resnet20x1_cifar10_known_counts():
    m = build_model({"name": "resnet20", "width": 1}, num_classes=10, in_channels=3)
    assert _count(m) == 292_954
    assert _count(m, set(prunable_keys(m))) == 268_336


@pytest.mark.parametrize("w,classes", [(1, 10), (2, 100), (4, 10)])
def test_resnet20_counts_by_hand(w, classes):
    m = build_model({"name": "resnet20", "width": w}, num_classes=classes, in_channels=3)
    total, prunable = resnet20_by_hand(w, classes)
    assert _count(m) == total
    assert _count(m, set(prunable_keys(m))) == prunable
    assert not any("shortcut" in k for k in prunable_keys(m))


@pytest.mark.parametrize("w", [1, 2])
def test_vgg11_counts_by_hand(w):
    m = build_model({"name": "vgg11", "width": w}, num_classes=10, in_channels=3)
    total, prunable = vgg11_by_hand(w, 10)
    assert _count(m) == total
    assert _count(m, set(prunable_keys(m))) == prunable
    assert not any(isinstance(x, torch.nn.BatchNorm2d) for x in m.modules())


@pytest.mark.parametrize("w,depth,hidden", [(1, 2, 128), (3, 3, 32)])
def test_mlp_counts_by_hand(w, depth, hidden):
    m = build_model({"name": "mlp", "width": w, "depth": depth, "hidden": hidden}, 10, 1, input_size=40)
    u = hidden * w
    prunable = 40 * u + (depth - 1) * u * u + u * 10
    assert _count(m) == prunable + depth * u + 10
    assert _count(m, set(prunable_keys(m))) == prunable


def test_resnet50_matches_torchvision_count():
    m = build_model({"name": "resnet50"}, num_classes=1000, in_channels=3)
    assert _count(m) == 25_557_032
    keys = prunable_keys(m)
    assert not any("downsample" in k for k in keys)
    assert "fc.weight" in keys and "conv1.weight" in keys


@pytest.mark.parametrize(
    "name,shape,classes",
    [
        ("resnet20", (2, 3, 32, 32), 10),   # CIFAR-10 / SVHN
        ("resnet20", (2, 3, 32, 32), 100),  # CIFAR-100
        ("vgg11", (2, 3, 32, 32), 10),
        ("vgg11", (2, 1, 32, 32), 10),
        ("mlp", (2, 40), 10),               # MNIST-1D
        ("mlp", (2, 3, 32, 32), 10),
        ("resnet50", (1, 3, 64, 64), 1000),  # ImageNet-shaped (small spatial size keeps it fast)
    ],
)
def test_forward_shapes(name, shape, classes):
    in_ch = shape[1] if len(shape) == 4 else 1
    size = 1
    for d in shape[1:]:
        size *= d
    m = build_model({"name": name, "width": 1}, classes, in_ch, input_size=size).eval()
    with torch.no_grad():
        assert m(torch.randn(*shape)).shape == (shape[0], classes)


@pytest.mark.parametrize("cfg,match", [
    ({"name": "resnet21"}, "unknown model"),
    ({"name": "resnet20", "width": 0}, "positive integer"),
    ({"name": "resnet20", "width": 1.5}, "positive integer"),
    ({"width": 1}, "needs a 'name'"),
    ({"name": "resnet50", "width": 2}, "width 1 only"),
])
def test_bad_model_configs(cfg, match):
    with pytest.raises(UserError, match=match):
        build_model(cfg, 10, 3, input_size=3072)
