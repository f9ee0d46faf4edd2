"""Every layer with weights is pruned or refused (issue 25, item 5).

A plug-in model with Conv1d layers "at 75% sparsity" once had 13.6% of its
weights pruned (only its Linear head) while every figure said S = 75%. The
prunable set is now every Linear and convolution weight plus what a card's
``also_prune`` names, less its ``never_prune``; a weight-bearing parameter
that is neither is refused in one line. The paper models keep exactly the
prunable sets they always had.
"""

from __future__ import annotations

import fnmatch
import json
import sys
import textwrap

import pytest
import torch
from torch import nn

from sparsebasin import cli, registry
from sparsebasin.errors import UserError
from sparsebasin.models import build_model, prunable_keys

from _pruning_data import make_data, meta

CARD = {
    "label": "Plug", "input": "flat", "widths": None, "model_args": {}, "never_prune": [], "fused": False,
    "fused_engine_cpu": "grouped",
    "cost": {"epoch_minutes": 0.01, "cpu_slowdown": 1.0, "width_exponent": 1.0, "width_ref": 1.0,
             "mem_mb_per_width2": 0, "gflops_per_image": 0.0001},
}

# A 1-D CNN on MNIST-1D's 40 values: two Conv1d layers (most of its weights) and a Linear head.
CONV1D = '''
import torch
from torch import nn
from sparsebasin.models._spec import SpecBuilder

ARCH = {card}


class TinyCNN(nn.Module):
    def __init__(self, num_classes, width=1):
        super().__init__()
        c = 8 * width
        self.conv1 = nn.Conv1d(1, c, 5, padding=2)
        self.conv2 = nn.Conv1d(c, c, 5, padding=2)
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x):
        x = torch.relu(self.conv1(x.view(x.shape[0], 1, -1)))
        x = torch.relu(self.conv2(x))
        return self.fc(x.mean(2))


def build(cfg, num_classes, in_channels, input_size):
    return TinyCNN(num_classes, cfg["width"])


def permutation_spec(model, stream_points="stage_output"):
    b = SpecBuilder("tinycnn", model)
    g1 = b.group("conv1", "conv1", relu=True)
    b.conv("conv1", g1, None)
    g2 = b.group("conv2", "conv2", relu=True)
    b.conv("conv2", g2, g1)
    b.linear("fc", None, g2)
    return b.build()
'''

# Every kind of convolution and a Linear (never run forward: only the prunable set is asked for), plus a
# custom layer with its own kernel and an embedding, which no default rule covers.
ZOO = '''
import torch
from torch import nn

ARCH = {card}


class Kernel(nn.Module):
    def __init__(self):
        super().__init__()
        self.kernel = nn.Parameter(torch.randn(4, 4))
        self.scale = nn.Parameter(torch.ones(4))


class Zoo(nn.Module):
    def __init__(self, num_classes, custom):
        super().__init__()
        self.c1 = nn.Conv1d(1, 2, 3)
        self.c2 = nn.Conv2d(2, 2, 3)
        self.c3 = nn.Conv3d(2, 2, 3)
        self.t1 = nn.ConvTranspose1d(2, 2, 3)
        self.t2 = nn.ConvTranspose2d(2, 2, 3)
        self.t3 = nn.ConvTranspose3d(2, 2, 3)
        self.bn = nn.BatchNorm1d(2)
        self.bi = nn.Bilinear(2, 2, 2)
        self.fc = nn.Linear(4, num_classes)
        if custom:
            self.block = Kernel()
            self.emb = nn.Embedding(5, 4)
            self.rnn = nn.GRU(4, 4) if custom == "gru" else None


def build(cfg, num_classes, in_channels, input_size):
    return Zoo(num_classes, custom={"zoo": False, "withgru": "gru"}.get(cfg["name"], True))


def permutation_spec(model, stream_points="stage_output"):
    raise NotImplementedError
'''


def _plugin(tmp_path, monkeypatch, module: str, source: str, cards: dict[str, dict]) -> None:
    """Put ``module`` (one file per card name) on sys.path and name it in SPARSEBASIN_PLUGINS."""
    names = []
    for name, card in cards.items():
        mod = f"{module}_{name}"
        (tmp_path / f"{mod}.py").write_text(textwrap.dedent(source).replace("{card}", repr({"name": name, **card})),
                                            encoding="utf-8")
        names.append(mod)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("SPARSEBASIN_PLUGINS", ",".join(names))
    for mod in names:
        sys.modules.pop(mod, None)


def _old_rule(model: nn.Module, card: dict) -> list[str]:
    """The prunable set before issue 25: Conv2d/Linear weights less the card's never_prune globs."""
    keys = []
    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            key = f"{name}.weight"
            if not any(fnmatch.fnmatchcase(key, pat) for pat in card["never_prune"]):
                keys.append(key)
    return keys


# prunable tensors of each paper model (checked against the old rule below, and pinned here so that both
# rules cannot drift together): ResNet20 without its 2 shortcut convs, VGG11's 8 convs and head, the MLP's
# 3 layers, ResNet50 without its 4 downsample convs
PAPER_KEYS = {"resnet20": 20, "vgg11": 9, "mlp": 3, "resnet50": 50}


@pytest.mark.parametrize("name", sorted(PAPER_KEYS))
def test_every_paper_model_keeps_exactly_its_prunable_set(name, monkeypatch):
    monkeypatch.delenv("SPARSEBASIN_PLUGINS", raising=False)
    card = registry.architecture(name)
    widths = card["widths"] or [1, 2, 4]
    for width in widths:
        shape = {"num_classes": 10, "in_channels": 3, "input_size": 40}
        if name == "resnet50":
            shape["num_classes"] = 1000
        model = build_model({"name": name, "width": width}, **shape)
        keys = prunable_keys(model)
        assert keys == _old_rule(model, card), (name, width)
        assert len(keys) == PAPER_KEYS[name], (name, width, keys)


def test_conv1d_layers_are_pruned(tmp_path, monkeypatch):
    _plugin(tmp_path, monkeypatch, "conv1d", CONV1D, {"tinycnn": CARD})
    model = build_model({"name": "tinycnn"}, num_classes=10, in_channels=1, input_size=40)
    assert prunable_keys(model) == ["conv1.weight", "conv2.weight", "fc.weight"]


def test_every_convolution_kind_is_prunable(tmp_path, monkeypatch):
    _plugin(tmp_path, monkeypatch, "zoo", ZOO, {"zoo": CARD})
    model = build_model({"name": "zoo"}, num_classes=3, in_channels=1, input_size=40)
    assert prunable_keys(model) == [f"{m}.weight" for m in ("c1", "c2", "c3", "t1", "t2", "t3", "bi", "fc")]


def test_a_weight_no_rule_covers_is_refused_in_one_line(tmp_path, monkeypatch):
    _plugin(tmp_path, monkeypatch, "zoo", ZOO, {"custom": CARD})
    model = build_model({"name": "custom"}, num_classes=3, in_channels=1, input_size=40)
    with pytest.raises(UserError) as err:
        prunable_keys(model)
    msg = str(err.value)
    assert "\n" not in msg
    assert "'block.kernel'" in msg and "Kernel" in msg and "also_prune" in msg and "never_prune" in msg
    assert "zoo_custom" in msg  # the module whose card to edit


def test_a_recurrent_layer_is_refused_until_the_card_names_it(tmp_path, monkeypatch):
    _plugin(tmp_path, monkeypatch, "zoo", ZOO, {"withgru": {**CARD, "also_prune": ["block.kernel", "emb.weight"]}})
    model = build_model({"name": "withgru"}, num_classes=3, in_channels=1, input_size=40)
    with pytest.raises(UserError, match=r"'rnn.weight_ih_l0' \(GRU\)"):
        prunable_keys(model)


def test_the_card_names_custom_weights_to_prune_or_to_keep(tmp_path, monkeypatch):
    cards = {"pruneall": {**CARD, "also_prune": ["block.kernel", "emb.weight"]},
             "keepdense": {**CARD, "also_prune": ["block.*"], "never_prune": ["emb.*", "t*"]}}
    _plugin(tmp_path, monkeypatch, "zoo", ZOO, cards)
    model = build_model({"name": "pruneall"}, num_classes=3, in_channels=1, input_size=40)
    keys = prunable_keys(model)
    assert "block.kernel" in keys and "emb.weight" in keys and "block.scale" not in keys  # also_prune globs
    assert keys == [k for k, _ in model.named_parameters() if k in set(keys)]  # in model order
    model = build_model({"name": "keepdense"}, num_classes=3, in_channels=1, input_size=40)
    keys = prunable_keys(model)
    assert "emb.weight" not in keys and not any(k.startswith("t") for k in keys)
    assert "block.kernel" in keys and "block.scale" in keys  # a card may prune a vector too, if it says so


def test_a_module_with_its_own_prunable_keys_is_held_to_the_same_coverage(tmp_path, monkeypatch):
    source = CONV1D + "\n\ndef prunable_keys(model):\n    return ['fc.weight']\n"
    _plugin(tmp_path, monkeypatch, "conv1d", source, {"ownkeys": CARD})
    model = build_model({"name": "ownkeys"}, num_classes=10, in_channels=1, input_size=40)
    with pytest.raises(UserError, match="'conv1.weight' .*also_prune"):
        prunable_keys(model)


def test_prune_step_reaches_the_target_over_the_conv1d_model(tmp_path, monkeypatch):
    """The whole prune step on the Conv1d plug-in: 75% of its weights pruned, and result.json says so."""
    from sparsebasin import checkpoints

    (tmp_path / "plugins").mkdir()
    _plugin(tmp_path / "plugins", monkeypatch, "conv1d", CONV1D, {"tinycnn": CARD})
    make_data(tmp_path / "data")
    torch.manual_seed(0)
    cfg = {"name": "tinycnn", "width": 1}
    model = build_model(cfg, 10, 1, input_size=40)
    checkpoints.save_checkpoint(tmp_path / "dense.pt", model, cfg, meta(), 1)
    out = tmp_path / "prune"
    code = cli.main(["prune", "--checkpoint", str(tmp_path / "dense.pt"), "--targets", "0.75", "--rate", "0.75",
                     "--ft-epochs", "1", "--ft-batch-size", "100", "--dataset", "mnist1d",
                     "--data-dir", str(tmp_path / "data"), "--device", "cpu", "--out-dir", str(out)])
    assert code == 0
    report = json.loads((out / "S0.75" / "sparsity.json").read_text(encoding="utf-8"))
    assert report["keys"] == ["conv1.weight", "conv2.weight", "fc.weight"]
    assert abs(report["realised"] - 0.75) < 1e-3
    assert abs(report["weights"]["realised"] - 0.75) < 1e-3  # over every weight of the model, not 13.6%
    result = json.loads((out / "S0.75" / "result.json").read_text(encoding="utf-8"))
    assert result["sparsity_realised"] == report["realised"]
    mask = checkpoints.load_mask(out / "S0.75" / "mask.pt")["mask"]
    kept = sum(int(m.sum()) for m in mask.values())
    assert result["sparsity_realised"] == 1 - kept / sum(m.numel() for m in mask.values())
