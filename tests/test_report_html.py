"""`snakemake --report report.html` opens on the results, as a person sees it in headless Chromium.

The landing view (workflow/report/workflow.rst) shows each experiment's reproduction headline, its scorecard as
a table, then its figures; the rule graph comes after them. The scorecard is also a page of its own
(tables/scorecard.html) that the report previews, where the .md and .csv show nothing in a browser.
"""

from __future__ import annotations

import json
import re
from html import unescape

import pytest
from browser import dump_dom
from default_run import HEADLINE

pytestmark = pytest.mark.slow

FIGURES = ("accuracy_vs_rewind", "accuracy_vs_sparsity", "baselines", "imp_barrier", "lmc_width", "plane")


def visible_text(dom: str) -> str:
    text = re.sub(r"<(script|style)\b.*?</\1>", " ", dom, flags=re.S)
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", text)).split())


def table_rows(dom: str) -> list[list[str]]:
    """The cells of every row of the scorecard tables in the page, as text."""
    rows = []
    for table in re.findall(r'<table class="sparsebasin">(.*?)</table>', dom, flags=re.S):
        for row in re.findall(r"<tr>(.*?)</tr>", table, flags=re.S):
            rows.append([visible_text(c) for c in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row, flags=re.S)])
    return rows


def test_the_report_opens_on_the_headline_the_scorecard_then_the_figures(default_run, tmp_path):
    report = default_run.workdir / "report.html"  # make run builds it
    head = report.read_bytes()[:200].lower()
    assert head.startswith(b"<!doctype html"), "report.html is not a single HTML file (a zip?)"

    dom = dump_dom(report, tmp_path / "profile")
    text = visible_text(dom)
    assert "Results" in text and "Workflow" in text, "the report's menu did not render"

    # first the headline, then the scorecard's rows, then the figures
    headline = HEADLINE.search(text)
    assert headline, text[:2000]
    rows = table_rows(dom)
    ours = [r for r in rows if len(r) >= 13 and r[1] == "MNIST-1D MLP" and r[5] == "Permuted" and r[6] == ""
            and r[7] == "test_acc"]
    assert len(ours) == 8, rows[:5]  # widths 1, 4 x sparsities 80, 95 % x k 0, 4
    assert all(re.fullmatch(r"\d+\.\d\d ± \d+\.\d\d \(n=2\)", r[8]) for r in ours), ours
    assert not any("dtype" in c for r in rows for c in r), "a table cell holds a pandas Series"
    claims = [r for r in rows if r and r[0] == "permuted > naive"]
    assert claims and any(re.fullmatch(r"\d+ of \d+", c) for c in claims[0]), claims  # the count of cells
    first_row = text.index(" ".join(c for c in ours[0][1:6] if c))
    assert headline.start() < first_row < text.index("Figures: mnist1d"), "not headline, scorecard, figures"

    # the figures are the report's embedded PNGs, loaded by the page
    imgs = dict(re.findall(r'<img class="figure"[^>]*data-result="([^"]+)"[^>]*src="([^"]{0,40})', dom))
    assert sorted(p.rsplit("/", 1)[-1][:-4] for p in imgs) == sorted(FIGURES), imgs
    assert all(src.startswith("data:image/png") for src in imgs.values()), imgs


def test_the_scorecard_page_is_in_the_report_and_renders(default_run, tmp_path):
    html = (default_run.workdir / "report.html").read_text(encoding="utf-8", errors="replace")
    results = json.loads(re.search(r"var results = (\{.*?\});\n", html, flags=re.S).group(1))
    page = "results/mnist1d/tables/scorecard.html"
    assert results[page]["mime_type"] == "text/html", results[page]["mime_type"]  # previewed in the report
    categories = json.loads(re.search(r"var categories = (\{.*?\});\n", html, flags=re.S).group(1))
    assert page in categories["mnist1d"]["1. scorecard"]

    dom = dump_dom(default_run.workdir / page, tmp_path / "profile")
    text = visible_text(dom)
    assert HEADLINE.search(text) and "Our cells" in text
    assert any(len(r) >= 13 and r[5] == "Naive" for r in table_rows(dom))
