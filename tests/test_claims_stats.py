"""The paper's claims carry their statistics: a one-sided paired t-test over seeds per cell (issue 25.4)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sparsebasin.analysis import scorecard as sc
from sparsebasin.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_the_test_is_a_one_sided_paired_t_test():
    from scipy import stats

    d = np.array([1.0, 2.5, -0.5, 3.0])
    r = sc.paired_test(d)
    want = stats.ttest_1samp(d, 0.0, alternative="greater")
    assert r["n"] == 4 and r["p"] == pytest.approx(want.pvalue) and r["t"] == pytest.approx(want.statistic)
    assert r["result"] == ("significant" if want.pvalue < 0.05 else "not significant")
    assert sc.CLAIM_ALPHA == 0.05 and sc.MIN_PAIRS == 2 and sc.CLAIM_TEST == "one-sided paired t-test over seeds"


@pytest.mark.parametrize("diffs,result", [
    ([5.0, 6.0, 5.5], "significant"),
    ([5.0, -6.0, 5.5], "not significant"),
    ([-5.0, -6.0, -5.5], "not significant"),  # one-sided: a clear loss is not evidence for the claim
    ([1.86 + 3.68 / math.sqrt(2), 1.86 - 3.68 / math.sqrt(2)], "not significant"),  # the demo's +1.86 ± 3.68, n = 2
    ([9.2, 10.2], "significant"),  # two seeds: t = 19.4 > 6.31
    ([4.0], "too few seeds"),
    ([2.0, 2.0, 2.0], "significant"),  # identical positive differences: t is infinite
])
def test_results_per_cell(diffs, result):
    assert sc.paired_test(diffs)["result"] == result


def test_a_non_finite_difference_is_counted_not_dropped():
    r = sc.paired_test([5.0, 6.0, float("nan"), 5.5])
    assert r["n"] == 3 and r["nonfinite"] == 1 and r["result"] == "significant"


def _runs(diffs_by_cell: dict, lth_offset: float = 3.0) -> pd.DataFrame:
    """Runs whose permuted − naive per seed is the given list (pp), per (sparsity, k)."""
    rows = []
    for (s, k), diffs in diffs_by_cell.items():
        for seed, d in enumerate(diffs):
            base = 0.80 + seed / 100
            for b, v in (("naive", base), ("permuted", base + d / 100), ("lth", base + (d + lth_offset) / 100)):
                rows.append(dict(experiment="e", dataset="mnist1d", model="mlp", width=1, seed=seed, sparsity=s, k=k,
                                 branch=b, test_acc=v, health="ok"))
    return pd.DataFrame(rows)


CELLS = {
    (0.8, 0): [1.0, 1.5, 2.0],      # significant
    (0.8, 4): [3.0, -2.0, 0.5],     # not significant (mean > 0)
    (0.9, 0): [2.0, 2.5, 3.5],      # significant, and a larger gap than at 0.8: grows
    (0.9, 4): [1.86],  # one seed: too few
}


def test_claims_count_significant_cells_and_say_the_test():
    card = sc.scorecard(_runs(CELLS))
    claim = {c.name: c for c in card.claims}
    pn = claim["permuted > naive"]
    assert (pn.significant, pn.not_significant, pn.too_few, pn.cells, pn.held) == (2, 1, 1, 4, 4)
    assert card.headline() == (
        "No published reference for this experiment (MNIST-1D MLP); permuted > naive significant in 2 of 4 cells "
        "(one-sided paired t-test over seeds, α = 0.05; 1 cell with fewer than 2 seeds, not tested).")
    lth = claim["LTH >= permuted"]  # LTH 3 pp above permuted at every seed
    assert (lth.significant, lth.too_few) == (3, 1)
    grows = claim["permuted − naive grows with sparsity"]  # k = 0 has three seeds at both; k = 4 one at 0.9
    assert (grows.significant, grows.not_significant, grows.too_few) == (1, 0, 1)
    row = next(r for r in grows.rows if r["k"] == 0)
    assert row["mean"] == pytest.approx(np.mean([1.0, 1.0, 1.5])) and row["sparsity"] == "80% → 90%"


def test_barrier_claim_is_tested_over_seeds_and_a_diverged_barrier_is_counted():
    rows = []
    for seed in range(4):
        for w, b in ((1, 0.50 + seed / 50), (4, 0.20 + seed / 100)):
            value = float("nan") if (seed == 3 and w == 4) else b
            rows.append(dict(dataset="mnist1d", model="mlp", width=w, seed=seed, mode="repair", split="test",
                             permuted=True, loss_barrier=value))
    claim = {c.name: c for c in sc.scorecard(_runs(CELLS), barriers=pd.DataFrame(rows)).claims}
    bar = claim["matched barrier shrinks with width"]
    r = bar.rows[0]
    assert r["n"] == 3 and r["nonfinite"] == 1 and r["result"] == "significant" and r["width"] == "×1 → ×4"


def test_scorecard_json_and_markdown_carry_the_per_cell_tests(tmp_path):
    _runs(CELLS).to_csv(tmp_path / "runs.csv", index=False)
    assert main(["scorecard", "--runs", str(tmp_path / "runs.csv"), "--out-csv", str(tmp_path / "s.csv"),
                 "--out-md", str(tmp_path / "s.md"), "--out-json", str(tmp_path / "s.json")]) == 0
    card = json.loads((tmp_path / "s.json").read_text(encoding="utf-8"))  # strict JSON: NaN would not parse
    json.loads((tmp_path / "s.json").read_text(encoding="utf-8"), parse_constant=lambda c: pytest.fail(c))
    pn = card["claims"][0]
    assert (pn["name"], pn["test"], pn["alpha"], pn["significant"], pn["cells"]) == \
        ("permuted > naive", "one-sided paired t-test over seeds", 0.05, 2, 4)
    assert [r["result"] for r in pn["rows"]] == ["significant", "not significant", "significant", "too few seeds"]
    md = (tmp_path / "s.md").read_text(encoding="utf-8")
    assert "### permuted > naive, per cell" in md and "| p (one-sided) | result |" in md
    assert "| permuted > naive | mean over seeds of permuted − naive (pp) > 0 | 2 | 1 | 1 | 4 of 4 |" in md


def test_summary_says_one_number(tmp_path):
    _runs(CELLS).to_csv(tmp_path / "runs.csv", index=False)
    main(["scorecard", "--runs", str(tmp_path / "runs.csv"), "--out-csv", str(tmp_path / "s.csv"),
          "--out-md", str(tmp_path / "s.md"), "--out-json", str(tmp_path / "s.json")])
    main(["summary", "--runs", str(tmp_path / "runs.csv"), "--scorecard", str(tmp_path / "s.json"),
          "--out", str(tmp_path / "summary.md")])
    text = (tmp_path / "summary.md").read_text(encoding="utf-8")
    counts = re.findall(r"(\d+) of (\d+)[^|\n]*cells", text)
    assert counts == [("2", "4")], counts  # the headline's, and no other count of cells
    assert "beats naive" not in text
    # each per-k cell shows its test
    assert re.search(r"\| 80% \| 0 \| [^\n]* \| significant \|", text)
    assert re.search(r"\| 90% \| 4 \| [^\n]* \|  \| too few seeds \|", text)


def test_readme_says_what_the_headline_says():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    para = text[text.index("**Did it reproduce?**"):]
    para = para[:para.index("\n\n")]
    flat = " ".join(para.split())
    assert "permuted > naive significant in X of Y cells (one-sided paired t-test over seeds, α = 0.05" in flat
    assert "in 8 of 8 cells" not in flat


def test_a_cell_without_a_width_tag_is_still_tested():
    runs = _runs(CELLS).drop(columns=["width", "experiment"])
    pn = sc.scorecard(runs).claims[0]
    assert (pn.significant, pn.cells) == (2, 4)
