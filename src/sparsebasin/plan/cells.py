"""Cells: one dataset and model at one or more widths, with the studies an experiment runs on them.

``cells(config)`` turns the checked config (``plan.config``) into ``Cell``
records with every study's defaults filled in and the cross-field rules a
schema cannot express checked (rewind points below the training length,
study widths and seeds within the cell's, one cell per dataset, model and
width in an experiment). Everything about *which* runs a study needs is in
``plan.table``; this module only knows what the config says.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..branches import PAPER_BRANCHES, SPARSE_BRANCHES
from .config import ConfigError

STUDIES = ("sweep", "lmc", "imp_barrier", "plane", "diversity", "early_matching")


@dataclass
class Cell:
    experiment: str
    index: int
    raw: dict
    sections: dict = field(default_factory=dict)

    @property
    def dataset(self) -> str:
        return self.raw["dataset"]

    @property
    def model(self) -> str:
        return self.raw["model"]

    @property
    def name(self) -> str:
        return f"{self.dataset}-{self.model}"

    @property
    def widths(self) -> list[int]:
        return list(self.raw["widths"])

    @property
    def seeds(self) -> list[int]:
        return list(self.raw["seeds"])

    @property
    def T(self) -> int:
        return int(self.raw["dense"]["epochs"])

    @property
    def where(self) -> str:
        return f"experiments.{self.experiment}.cells[{self.index}]"

    @property
    def dense(self) -> dict:
        return self.raw["dense"]

    @property
    def sparse(self) -> dict:
        """The sparse runs' settings: the dense ones (minus epochs and preset) overridden by ``sparse``."""
        out = {k: v for k, v in self.raw["dense"].items() if k not in ("epochs", "preset")}
        out.update(self.raw["sparse"])
        return out

    @property
    def methods(self) -> list[str]:
        """The matching methods the cell compares (``match.method``: one, or a list); the first is its own."""
        m = self.raw["match"]["method"]
        return list(m) if isinstance(m, list) else [m]

    @property
    def match_a(self) -> str:
        """Which A a matching at an earlier epoch e of B uses: final (trained A) or same (A at e)."""
        return (self.section("early_matching") or {}).get("match_a", "final")

    def section(self, name: str) -> dict | None:
        return self.sections.get(name)

    def pairs(self, name: str) -> list[tuple[int, int]]:
        """(width, seed) pairs a study covers."""
        sec = self.section(name)
        return [(w, s) for w in sec["widths"] for s in sec["seeds"]] if sec else []

    def save_epochs(self) -> list[int]:
        """Rewind checkpoints the cell's dense runs keep (both A and B)."""
        ks: set[int] = set()
        for name, sec in self.sections.items():
            if name == "sweep":
                ks.update(sec["rewind"])
                ks.update(e for e in sec["match_epochs"] if e < self.T)  # B at an earlier epoch (and A if same)
            if name in ("plane", "diversity", "early_matching"):
                ks.add(sec["k"])
            if name == "early_matching":
                ks.update(e for e in sec["epochs"] if e < self.T)
        return sorted(ks)

    def rewind_points(self) -> list[int]:
        """Every epoch k a sparse run of the cell starts from (it trains T - k epochs)."""
        ks: set[int] = set()
        for name, sec in self.sections.items():
            if name == "sweep":
                ks.update(sec["rewind"])
            elif name in ("plane", "diversity", "early_matching"):
                ks.add(sec["k"])
        return sorted(ks)

    def prune_targets(self) -> list[float]:
        """Every target sparsity the cell's IMP chain produces."""
        ts: set[float] = set()
        for name, sec in self.sections.items():
            if name in ("sweep", "early_matching"):
                ts.update(sec["sparsities"])
            elif name in ("imp_barrier", "plane", "diversity"):
                ts.add(sec["sparsity"])
        return sorted(ts)


def _subset(where, values, allowed, what):
    bad = [v for v in values if v not in allowed]
    if bad:
        raise ConfigError(f"{where} lists {what} {bad[0]!r}, which is not in the cell's {what}s {list(allowed)}; "
                          f"add it to the cell or remove it here")


def _below_epochs(where, values, epochs, inclusive=False):
    for v in values:
        if (v > epochs) if inclusive else (v >= epochs):
            rel = "<=" if inclusive else "<"
            raise ConfigError(f"{where} contains {v}, but it must be {rel} dense.epochs ({epochs}); "
                              f"remove it or raise dense.epochs")


def _branches(where, names) -> list[str]:
    """The sweep's sparse branches (default the paper's), each a record of ``sparsebasin.branches``."""
    for name in names:
        if name not in SPARSE_BRANCHES:
            raise ConfigError(f"{where} lists {name!r}, which is not a sparse branch; choose from "
                              f"{', '.join(SPARSE_BRANCHES)}")
    if len(set(names)) != len(names) or not names:
        raise ConfigError(f"{where} must list each branch once (at least one)")
    return [b for b in SPARSE_BRANCHES if b in names]  # the table's order


def normalise(exp: str, i: int, raw: dict) -> Cell:
    cell = Cell(exp, i, dict(raw))
    widths, seeds, T = cell.widths, cell.seeds, cell.T
    for name in STUDIES:
        if name not in raw:
            continue
        sec = dict(raw[name])
        w = f"{cell.where}.{name}"
        if name == "plane":
            if sec["width"] not in widths:
                raise ConfigError(f"{w}.width = {sec['width']} is not one of the cell's widths {widths}; "
                                  "pick one of them")
            sec.setdefault("seed", seeds[0])
            if sec["seed"] not in seeds:
                raise ConfigError(f"{w}.seed = {sec['seed']} is not one of the cell's seeds {seeds}; pick one of them")
            sec["widths"], sec["seeds"] = [sec["width"]], [sec["seed"]]
        else:
            sec.setdefault("widths", widths)
            sec.setdefault("seeds", seeds)
            _subset(f"{w}.widths", sec["widths"], widths, "width")
            _subset(f"{w}.seeds", sec["seeds"], seeds, "seed")
        if name == "sweep":
            _below_epochs(f"{w}.rewind", sec["rewind"], T)
            sec["branches"] = _branches(f"{w}.branches", sec.get("branches", list(PAPER_BRANCHES)))
            sec["match_epochs"] = sorted(set(sec.get("match_epochs", [T])))
            _below_epochs(f"{w}.match_epochs", sec["match_epochs"], T, inclusive=True)
        if name in ("plane", "diversity", "early_matching"):
            _below_epochs(f"{w}.k", [sec["k"]], T)
        if name == "early_matching":
            _below_epochs(f"{w}.epochs", sec["epochs"], T, inclusive=True)
        cell.sections[name] = sec
    if not cell.sections:
        raise ConfigError(f"{cell.where} has no study; add at least one of: {', '.join(STUDIES)}")
    return cell


def cells(config: dict) -> list[Cell]:
    out, seen = [], {}
    for exp, e in config["experiments"].items():
        ks = set()
        for i, raw in enumerate(e["cells"]):
            cell = normalise(exp, i, raw)
            for w in cell.widths:
                key = (exp, cell.dataset, cell.model, w)
                if key in seen:
                    raise ConfigError(f"{cell.where}: {cell.dataset} {cell.model} width {w} already appears in "
                                      f"cells[{seen[key]}]; give each width to one cell only")
                seen[key] = i
            if cell.section("early_matching"):
                ks.add(cell.section("early_matching")["k"])
            out.append(cell)
        if len(ks) > 1:
            raise ConfigError(f"experiments.{exp}: the early_matching sections use different k {sorted(ks)}; "
                              "Table 15 is drawn at one rewind point, so use one k per experiment")
    return out
