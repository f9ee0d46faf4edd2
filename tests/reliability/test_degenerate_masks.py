"""Targets and masks that keep no trainable path are refused (issue: nothing lost, class 5).

A target that rounds to zero kept weights, a mask with no True entry, and a
mask that prunes a whole layer the forward pass cannot go around (the input
is then cut off from the output) end in one line naming the target or mask
and the counts; a layer the network can bypass (a ResNet block's conv, with
its skip connection) is fine.
"""

from __future__ import annotations

import pytest
import torch
from relutil import diff_snapshots, error_lines, snapshot

from sparsebasin import checkpoints, cli
from sparsebasin.errors import UserError
from sparsebasin.masking import check_trainable, input_reaches_output
from sparsebasin.models import build_model, prunable_keys


def _cli(argv, capsys):
    try:
        rc = cli.main(list(argv))
    except SystemExit as exc:
        rc = exc.code
    return rc, capsys.readouterr().err


def _check(rc, err, *names):
    assert rc == 2, err[-2000:]
    assert "Traceback" not in err
    lines = error_lines(err)
    assert len(lines) == 1, lines
    for n in names:
        assert n in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("target", ["0.999999", "0.9995"])
def test_prune_target_without_a_trainable_path_is_refused(target, refs, tmp_path, capsys):
    argv = refs.argv("prune", tmp_path / "prune")
    argv[argv.index("--targets") + 1] = target
    before = snapshot(refs.data)
    rc, err = _cli(argv, capsys)
    line = _check(rc, err, target, "kept" if target == "0.9995" else "keeps 0 of")
    assert "lower target sparsity" in line or "use targets below" in line
    assert diff_snapshots(before, snapshot(refs.data)) == []


def _mask_file(refs, tmp_path, name, edit):
    obj = checkpoints.load_mask(refs.mask)
    mask = {k: v.clone() for k, v in obj["mask"].items()}
    edit(mask)
    path = tmp_path / name
    checkpoints.save_mask(path, mask, obj["model"], obj["data"], obj.get("sparsity"))
    return path


def test_all_false_mask_is_refused(refs, tmp_path, capsys):
    bad = _mask_file(refs, tmp_path, "none.pt", lambda m: [v.zero_() for v in m.values()])
    argv = refs.argv("sparse", tmp_path / "out")
    argv[argv.index("--mask") + 1] = str(bad)
    rc, err = _cli(argv, capsys)
    _check(rc, err, str(bad), "keeps 0 of")
    assert not (tmp_path / "out").exists()


def test_mask_that_prunes_a_whole_needed_layer_is_refused(refs, tmp_path, capsys):
    bad = _mask_file(refs, tmp_path, "nohead.pt", lambda m: m["head.weight"].zero_())
    argv = refs.argv("sparse", tmp_path / "out")
    argv[argv.index("--mask") + 1] = str(bad)
    rc, err = _cli(argv, capsys)
    _check(rc, err, str(bad), "head.weight", "cuts the input off")
    rc, err = _cli(["train", "--dataset", "mnist1d", "--data-dir", str(refs.data), "--model", "mlp", "--hidden", "32",
                    "--epochs", "1", "--mask", str(bad), "--out-dir", str(tmp_path / "t")], capsys)
    _check(rc, err, str(bad), "head.weight")


def _full(model):
    params = dict(model.named_parameters())
    return {k: torch.ones_like(params[k], dtype=torch.bool) for k in prunable_keys(model)}


def test_resnet_block_conv_can_be_bypassed_but_the_stem_cannot():
    model = build_model({"name": "resnet20", "width": 1}, 10, 3)
    mask = _full(model)
    mask["layer2.1.conv1.weight"].zero_()  # the skip connection carries the signal around it
    assert input_reaches_output(model, mask)
    check_trainable(mask, model, "mask m")
    mask["conv1.weight"].zero_()  # the stem: every path starts here
    assert not input_reaches_output(model, mask)
    with pytest.raises(UserError, match="conv1.weight"):
        check_trainable(mask, model, "mask m")


def test_vgg_conv_cannot_be_bypassed():
    model = build_model({"name": "vgg11", "width": 1}, 10, 3)
    mask = _full(model)
    assert input_reaches_output(model, mask)
    mask["features.3.weight"].zero_()
    assert not input_reaches_output(model, mask)


def test_a_single_kept_path_is_enough():
    model = build_model({"name": "mlp", "width": 1, "hidden": 8, "depth": 2}, 10, 1, input_size=40)
    mask = {k: torch.zeros_like(v, dtype=torch.bool) for k, v in _full(model).items()}
    mask["hidden.0.weight"][3, 7] = True
    mask["hidden.1.weight"][5, 3] = True
    mask["head.weight"][2, 5] = True
    assert input_reaches_output(model, mask)
    mask["hidden.1.weight"][5, 3] = False
    mask["hidden.1.weight"][4, 3] = True  # unit 4 of layer 2 feeds nothing in the head: no path
    assert not input_reaches_output(model, mask)
