"""The Markdown this package writes (scorecard.md, summary.md), as HTML a browser shows.

Snakemake's HTML report previews images, PDFs and HTML but not Markdown or CSV,
so the scorecard also comes as a page (``scorecard --out-html``), and the report's
landing page (workflow/report/workflow.rst) includes its body. Only the subset
``analysis.tables.markdown_table`` and the writers here produce is converted:
headings, paragraphs, pipe tables, ``code`` and **bold**; an HTML comment (the
provenance line) is kept as a comment.
"""

from __future__ import annotations

import html
import re

STYLE = """
div.sparsebasin { font-family: system-ui, sans-serif; margin: 1em; color: #222; }
table.sparsebasin { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0 1.5em; }
table.sparsebasin th, table.sparsebasin td { border: 1px solid #ccc; padding: 0.2em 0.5em; text-align: left; }
table.sparsebasin th { background: #f2f2f2; }
table.sparsebasin td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
div.sparsebasin p.headline { font-size: 1.1em; }
"""


def _inline(text: str) -> str:
    out = html.escape(text, quote=False)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    return re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", out)


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _numeric(text: str) -> bool:
    return bool(re.match(r"^[+\-−]?\d", text)) or text == "–"


def _table(lines: list[str]) -> str:
    head, body = _cells(lines[0]), [_cells(ln) for ln in lines[2:]]
    rows = ["<tr>" + "".join(f"<th>{_inline(c)}</th>" for c in head) + "</tr>"]
    for cells in body:
        rows.append("<tr>" + "".join(f'<td class="num">{_inline(c)}</td>' if _numeric(c) else f"<td>{_inline(c)}</td>"
                                     for c in cells) + "</tr>")
    return '<table class="sparsebasin">\n' + "\n".join(rows) + "\n</table>"


def fragment(markdown: str, headline_prefix: str | None = None) -> str:
    """The body HTML of ``markdown``; the first paragraph starting with ``headline_prefix`` gets class headline."""
    lines = markdown.splitlines()
    out, i = [], 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
        elif line.lstrip().startswith("<!--"):
            j = i
            while "-->" not in lines[j] and j + 1 < len(lines):
                j += 1
            out.append("\n".join(lines[i:j + 1]))
            i = j + 1
        elif line.startswith("#"):
            level = min(len(line) - len(line.lstrip("#")), 6)
            out.append(f"<h{level}>{_inline(line[level:].strip())}</h{level}>")
            i += 1
        elif line.startswith("|") and i + 1 < len(lines) and re.match(r"^\|(\s*:?-+:?\s*\|)+\s*$", lines[i + 1]):
            j = i + 2
            while j < len(lines) and lines[j].startswith("|"):
                j += 1
            out.append(_table(lines[i:j]))
            i = j
        else:
            j = i + 1  # at least this line, also a "|" line that opens no table
            while j < len(lines) and lines[j].strip() and not lines[j].startswith(("#", "|", "<!--")):
                j += 1
            text = " ".join(ln.strip() for ln in lines[i:j])
            cls = ' class="headline"' if headline_prefix is not None and text.startswith(headline_prefix) else ""
            if cls:
                headline_prefix = None
            out.append(f"<p{cls}>{_inline(text)}</p>")
            i = j
    return "\n".join(out)


def page(markdown: str, title: str, headline_prefix: str | None = None) -> str:
    """A standalone UTF-8 page (no scripts, no external files) of ``markdown``; its style is scoped to its
    own ``div.sparsebasin``, so the page can also be included in another (the report's landing page)."""
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{html.escape(title)}</title>\n'
            f'<style>{STYLE}</style>\n</head>\n<body>\n<div class="sparsebasin">\n{fragment(markdown, headline_prefix)}\n'
            "</div>\n</body>\n</html>\n")
