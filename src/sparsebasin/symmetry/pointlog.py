"""The finished points of a long evaluation, kept beside its output so a killed job resumes point by point.

An ImageNet LMC is 66 points of evaluation (11 alphas x 3 modes x 2 paths),
hours of work that a SLURM time limit or preemption would otherwise throw
away. Each finished point's rows go to ``.<output name>.points.json`` (plain
JSON, written atomically; floats round-trip exactly), under a fingerprint of
everything that decides the numbers: the endpoints' tensors, the permutation,
the evaluation settings, the data and the device type. A rerun with the same
fingerprint evaluates only the missing points; any other file there is set
aside (one line says so) and the evaluation starts over. Every point is
computed from seeded samples alone, so a resumed output equals an
uninterrupted one. The file is removed once the output is written.

Data-parallel: every rank reads the file, and they meet at a barrier before
rank 0, the only writer, may change it, so all ranks skip the same points.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .. import distributed, io
from ..progress import log


class PointLog:
    def __init__(self, out: str | Path, identity: dict, what: str):
        from ..training.resume import fingerprint

        self.path = io.scratch_path(out, ".points.json")  # within the name limit for any legal output name
        self.fingerprint = fingerprint(identity)
        self.points: dict[str, list[dict]] = {}
        self.samples: dict[str, Any] = {}
        self._read(what)
        distributed.barrier()  # every rank has read the file before rank 0 writes it

    def _read(self, what: str) -> None:
        say = log if distributed.writer() else (lambda _msg: None)
        if not self.path.exists():
            return
        try:
            saved = json.loads(self.path.read_text(encoding="utf-8"))
            same = isinstance(saved, dict) and saved.get("fingerprint") == self.fingerprint
        except (OSError, ValueError):
            saved, same = None, False
        if not same:
            say(f"{what}: {self.path} holds points of other inputs or is unreadable; starting over")
            return
        self.points = dict(saved.get("points", {}))
        self.samples = dict(saved.get("samples", {}))
        say(f"{what}: resuming after {len(self.points)} finished point(s) from {self.path}")

    def get(self, key: str) -> list[dict] | None:
        kept = self.points.get(key)
        if kept is None:
            return None
        return [dict(zip(kept["columns"], values)) for values in kept["rows"]]

    def put(self, key: str, rows: list[dict], samples: dict) -> None:
        # columns kept apart: the JSON writer sorts keys, and the CSV's column order comes from the rows
        self.points[key] = {"columns": list(rows[0]) if rows else [], "rows": [list(r.values()) for r in rows]}
        self.samples.update(samples)
        if distributed.writer():
            io.write_json(self.path, {"fingerprint": self.fingerprint, "points": self.points, "samples": self.samples})

    def close(self) -> None:
        """The output is written: the points are no longer needed."""
        if distributed.writer():
            self.path.unlink(missing_ok=True)
