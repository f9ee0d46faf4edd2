"""Writing analysis outputs atomically, each with the provenance of the step.

Where provenance goes, per format:
- CSV: a sidecar ``<file>.provenance.json`` (keeps the CSV plain for any reader),
  written before the CSV so a CSV never exists without it;
- Markdown: a one-line HTML comment ``<!-- provenance: {...} -->`` at the top
  (invisible when rendered);
- PDF: the ``Subject`` metadata field; PNG: a ``Provenance`` text chunk
  (both hold the provenance as JSON).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from .. import io
from ..errors import UserError, os_error_in


def provenance_json(provenance: dict) -> str:
    return json.dumps(provenance, sort_keys=True, default=str)


def sidecar_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".provenance.json")


def write_csv(path: str | Path, table: pd.DataFrame, provenance: dict) -> None:
    io.write_json(sidecar_path(path), provenance)
    io.write_text(path, table.to_csv(index=False))


def write_markdown(path: str | Path, text: str, provenance: dict) -> None:
    comment = provenance_json(provenance).replace("-->", "-- >")
    io.write_text(path, f"<!-- provenance: {comment} -->\n\n{text.rstrip()}\n")


def save_figure(fig, pdf: str | Path | None, png: str | Path | None, provenance: dict, dpi: int = 200) -> None:
    """Save ``fig`` as PDF and/or PNG atomically, provenance in the file metadata."""
    from . import style

    meta = provenance_json(provenance)
    targets = [(pdf, "pdf", {"Subject": meta, "Creator": "sparsebasin"}), (png, "png", {"Provenance": meta})]
    for path, fmt, metadata in targets:
        if path is None:
            continue
        path = Path(path)
        try:
            with style.context(), io.atomic_path(path) as tmp:
                fig.savefig(tmp, format=fmt, metadata=metadata, dpi=dpi)
        except Exception as exc:
            # matplotlib can turn ENOSPC into an AttributeError while it cleans up; report the disk.
            cause = os_error_in(exc)
            if cause is None:
                raise
            raise UserError(f"could not write {path}: {cause.strerror or cause}; free space or fix permissions, "
                            "then rerun") from exc
