"""The analysis steps chained as the workflow chains them, on tiny fake results."""

from __future__ import annotations

import json

import pandas as pd
import torch

from sparsebasin import cli, io


def _result(path, branch, seed, k, acc):
    tags = {"experiment": "demo", "dataset": "mnist1d", "model": "mlp", "width": "1", "seed": str(seed), "branch": branch}
    if branch != "dense":
        tags.update(sparsity="0.9", k=str(k))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"run": path.parent.name, "tags": tags, "test_acc": acc, "test_top5": 1.0, "test_loss": 0.5,
                                "train_loss": 0.4, "epochs": 2, "density": 0.1, "provenance": {}}))
    return str(path)


def test_results_to_figure_table_summary(tmp_path):
    inputs = []
    for seed in (0, 1):
        inputs.append(_result(tmp_path / f"d{seed}" / "result.json", "dense", seed, None, 0.9))
        for k in (0, 2):
            for branch, acc in (("lth", 0.8), ("naive", 0.6), ("permuted", 0.7)):
                inputs.append(_result(tmp_path / f"{branch}{seed}{k}" / "result.json", branch, seed, k, acc + seed / 100))
    runs = tmp_path / "runs.csv"
    assert cli.main(["collect", "--inputs", *inputs, "--out", str(runs)]) == 0
    assert cli.main(["figure", "--kind", "accuracy_vs_rewind", "--table", str(runs),
                     "--out", str(tmp_path / "f.pdf"), "--png", str(tmp_path / "f.png")]) == 0
    assert cli.main(["figure", "--kind", "accuracy_vs_sparsity", "--table", str(runs), "--ks", "2",
                     "--out", str(tmp_path / "s.pdf")]) == 0
    assert cli.main(["table", "--kind", "accuracy", "--table", str(runs),
                     "--out-csv", str(tmp_path / "t.csv"), "--out-md", str(tmp_path / "t.md")]) == 0
    assert cli.main(["summary", "--runs", str(runs), "--out", str(tmp_path / "summary.md")]) == 0
    summary = (tmp_path / "summary.md").read_text()
    assert "| ×1 | 90% | 80.50 | 60.50 | 70.50 | +10.00 ± 0.00 | 50% |" in summary
    assert (tmp_path / "f.pdf").stat().st_size > 0 and (tmp_path / "s.pdf").stat().st_size > 0


def test_ensembles_to_diversity_table(tmp_path):
    labels = torch.tensor([0, 1, 1, 0])
    logits = {
        "a": torch.tensor([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0], [2.0, 0.0]]),
        "b": torch.tensor([[2.0, 0.0], [0.0, 2.0], [0.0, 2.0], [0.0, 2.0]]),
    }
    preds = {}
    for name, x in logits.items():
        preds[name] = tmp_path / f"{name}.pt"
        io.save_artifact(preds[name], "predictions", {"logits": x, "labels": labels})
    outs = []
    for group in ("lth", "permuted"):
        out = tmp_path / f"{group}.json"
        assert cli.main(["ensemble", "--predictions", str(preds["a"]), str(preds["b"]), "--group", group,
                         "--tag", "dataset=mnist1d", "--tag", "width=1", "--tag", "sparsity=0.9", "--out", str(out)]) == 0
        outs.append(str(out))
    table = tmp_path / "ens.csv"
    assert cli.main(["collect", "--inputs", *outs, "--out", str(table)]) == 0
    assert cli.main(["table", "--kind", "diversity", "--table", str(table),
                     "--out-csv", str(tmp_path / "d.csv"), "--out-md", str(tmp_path / "d.md")]) == 0
    frame = pd.read_csv(tmp_path / "d.csv")
    assert list(frame["group"]) == ["lth", "permuted"]
    # a is right on 3/4, b on 3/4; they disagree on points 3 and 4.
    assert frame["acc_mean_pct"].tolist() == [75.0, 75.0]
    assert frame["disagreement"].tolist() == [0.5, 0.5]


def test_interpolate_barriers_json_to_lmc_table_and_summary(tmp_path):
    """Barriers JSON as ``interpolate`` writes it (a ``barriers`` list of records plus extras)."""
    files = []
    for width, seed, barrier in [(1, 0, 0.8), (1, 1, 0.6), (4, 0, 0.2)]:
        records = [{"mode": m, "permuted": p, "split": sp, "loss_barrier": b, "error_barrier": b / 10,
                    "alpha_loss_max": 0.5, "loss_a": 0.3, "loss_b": 0.3}
                   for m, p, b in [("plain", False, 2.0), ("repair", True, barrier)] for sp in ("train", "test")]
        path = tmp_path / f"w{width}s{seed}.json"
        path.write_text(json.dumps({"barriers": records, "epoch_a": 5, "epoch_b": 5, "inputs": {"a": "A", "b": "B"},
                                    "tags": {"experiment": "demo", "dataset": "mnist1d", "model": "mlp",
                                             "width": str(width), "seed": str(seed)}, "provenance": {}}))
        files.append(str(path))
    table = tmp_path / "lmc_barriers.csv"
    assert cli.main(["collect", "--inputs", *files, "--out", str(table)]) == 0
    assert len(pd.read_csv(table)) == 12
    assert cli.main(["table", "--kind", "lmc", "--table", str(table),
                     "--out-csv", str(tmp_path / "l.csv"), "--out-md", str(tmp_path / "l.md")]) == 0
    md = (tmp_path / "l.md").read_text()
    assert "| ×1 | 2.000 ± 0.000 | 0.700 ± 0.141 |" in md and "| ×4 | 2.000 (n=1) | 0.200 (n=1) |" in md
    runs = tmp_path / "runs.csv"
    pd.DataFrame([dict(experiment="demo", dataset="mnist1d", model="mlp", width=w, seed=0, branch="dense", test_acc=0.9)
                  for w in (1, 4)]).to_csv(runs, index=False)
    assert cli.main(["summary", "--runs", str(runs), "--barriers", str(table), "--out", str(tmp_path / "s.md")]) == 0
    assert "| ×1 | 90.00 (n=1) | 2.000 ± 0.000 | 0.700 ± 0.141 |" in (tmp_path / "s.md").read_text()
