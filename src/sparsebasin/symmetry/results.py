"""Result tables of the symmetry steps: tidy CSV rows with tag columns and a provenance sidecar.

CSV files cannot hold provenance inline, so it goes to ``<file>.provenance.json``
(the convention of ``analysis.outputs``), written before the CSV so a CSV never
exists without it.
"""

from __future__ import annotations

import csv
import io as _io
from pathlib import Path
from typing import Mapping, Sequence

from .. import io
from ..errors import UserError


def sidecar_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".provenance.json")


def write_csv(path: str | Path, rows: Sequence[Mapping], tags: Mapping[str, str], provenance: dict) -> None:
    """Rows plus one column per tag; a tag may not shadow a measured column."""
    if not rows:
        raise UserError(f"no rows to write to {path}; nothing was evaluated")
    fields = list(rows[0])
    clash = sorted(set(tags) & set(fields))
    if clash:
        raise UserError(f"--tag {', '.join(clash)} would overwrite a column of {path}; rename the tag")
    buf = _io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields + list(tags), lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({**r, **tags})
    io.write_json(sidecar_path(path), provenance)
    io.write_text(path, buf.getvalue())


def check_dataset(meta: Mapping, dataset: str, source: str) -> None:
    """The checkpoint's recorded dataset must be the one given on the command line."""
    name = meta.get("data", {}).get("name")
    if name != dataset:
        raise UserError(f"{source} was trained on {name!r}, but --dataset is {dataset!r}; pass the matching dataset")


__all__ = ["write_csv", "sidecar_path", "check_dataset"]
