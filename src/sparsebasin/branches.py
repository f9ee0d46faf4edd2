"""The runs the paper compares, and the controls researchers add beside them: one table of records.

A sparse branch is a masked run from rewind point k. Branches differ only in
which dense model's rewind checkpoint starts the run and which transforms of
the mask and of the weights they apply (PROTOCOL.md; the paper's three, then
the controls the field asks for):

- ``lth``:      A's checkpoint at k, A's mask m_A (the lottery ticket)
- ``naive``:    B's checkpoint at k, m_A
- ``permuted``: B's checkpoint at k, pi(m_A) (m_A aligned to B by the matching)
- ``random``:   B's checkpoint at k, m_A shuffled within each layer under a
  recorded seed: the same per-layer density, no information from A beyond it
  (open_lth's randomly_prune branch)
- ``signs``:    B's magnitudes at k with A's signs at k, m_A: the explanation
  that a mask plus the right signs is what transfers (Oh, Baik & Lee, ICLR
  2025, "Find A Winning Sign"; Gadhikar et al., NeurIPS 2025, "Sign-In to the
  Lottery")
- ``lth_random``: A's checkpoint at k, m_A shuffled within each layer: does the
  ticket need its mask's layout on its own init (open_lth's randomly_prune)?

``dense`` (A and B) and ``imp`` (the pruned and fine-tuned A) are the
references tables and figures show beside them.

Every layer reads this table: the plan (which checkpoint, which extra inputs,
the run directories), the steps (``--branch`` choices and the transforms),
fused training, and the analyses (display names, styles, Table 1 groups).
Adding a branch is one record here (plus a transform below if it needs a new
one) and its test. Importing this module needs no torch; the transforms
import it when they run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

# How a branch's mask is made from A's IMP mask m_A (the names are what tables and docs print).
MASKS = ("m_A", "pi(m_A)", "shuffled m_A")
# How a branch's initial weights are made from the rewind checkpoint.
WEIGHTS = ("rewind", "A's signs")


@dataclass(frozen=True)
class Branch:
    """One kind of run tables and figures show: its facts, its display name and its style."""

    name: str
    label: str
    color: str
    marker: str
    linestyle: str = "-"
    rewind: str | None = None  # "A" or "B": whose checkpoint at k starts the run (None: a reference)
    mask: str = "m_A"  # one of MASKS
    weights: str = "rewind"  # one of WEIGHTS
    paper: bool = True  # one of the paper's runs: what a config runs unless it lists its branches
    diversity: bool = False  # an ensemble group of Table 1
    about: str = ""

    @property
    def sparse(self) -> bool:
        return self.rewind is not None

    @property
    def needs_permutation(self) -> bool:
        """The plan passes the matching's permutation (``--mask-permutation``)."""
        return self.mask == "pi(m_A)"

    @property
    def needs_signs(self) -> bool:
        """The plan passes A's rewind checkpoint (``--signs-from``)."""
        return self.weights == "A's signs"

    @property
    def style(self) -> dict:
        return {"color": self.color, "marker": self.marker, "linestyle": self.linestyle}


# Display order: the references, then the sparse branches. Colours: the Okabe-Ito palette.
TABLE: tuple[Branch, ...] = (
    Branch("dense", "Dense", "#000000", "", "--", diversity=True, about="dense models A and B"),
    Branch("imp", "IMP", "#CC79A7", "D", ":", diversity=True, about="A pruned and fine-tuned by IMP"),
    Branch("lth", "LTH", "#0072B2", "o", rewind="A", diversity=True, about="A's rewind weights with m_A"),
    Branch("naive", "Naive", "#D55E00", "s", rewind="B", diversity=True, about="B's rewind weights with m_A"),
    Branch("permuted", "Permuted", "#009E73", "^", rewind="B", mask="pi(m_A)", diversity=True,
           about="B's rewind weights with m_A aligned to B"),
    Branch("random", "Random mask", "#999999", "v", "-.", rewind="B", mask="shuffled m_A", paper=False,
           about="B's rewind weights with m_A shuffled within each layer"),
    Branch("signs", "A's signs", "#E69F00", "P", "--", rewind="B", weights="A's signs", paper=False,
           about="B's rewind magnitudes with A's rewind signs, m_A"),
    Branch("lth_random", "LTH, random mask", "#56B4E9", "X", ":", rewind="A", mask="shuffled m_A", paper=False,
           about="A's rewind weights with m_A shuffled within each layer (open_lth's randomly_prune)"),
)

BY_NAME: dict[str, Branch] = {b.name: b for b in TABLE}
REFERENCES = tuple(b.name for b in TABLE if not b.sparse)
SPARSE_BRANCHES = tuple(b.name for b in TABLE if b.sparse)  # what --branch accepts
BRANCHES = SPARSE_BRANCHES
PAPER_BRANCHES = tuple(b.name for b in TABLE if b.sparse and b.paper)  # a sweep's default
ALL_BRANCHES = tuple(b.name for b in TABLE)  # display order: references first
GROUPS = tuple(b.name for b in TABLE if b.diversity)  # Table 1's ensemble groups


def get(name: str) -> Branch:
    """The record of a sparse branch, or one line listing the known ones."""
    from .errors import UserError

    branch = BY_NAME.get(str(name))
    if branch is None or not branch.sparse:
        raise UserError(f"branch {name!r} is not one of {', '.join(SPARSE_BRANCHES)} (sparsebasin.branches)")
    return branch


# ------------------------------------------------------------- transforms --

def shuffled_mask(mask: Mapping, seed: int) -> dict:
    """Each layer's mask with its kept positions drawn again uniformly, under ``seed``: same per-layer density.

    Layers are drawn in sorted key order from one generator, so the result
    depends only on the mask and the seed.
    """
    import torch

    gen = torch.Generator().manual_seed(int(seed))
    out = {}
    for key in sorted(mask):
        m = mask[key]
        flat = torch.zeros(m.numel(), dtype=torch.bool)
        flat[torch.randperm(m.numel(), generator=gen)[: int(m.sum())]] = True
        out[key] = flat.view(m.shape)
    return {key: out[key] for key in mask}


def signs_applied(state: Mapping, signs: Mapping, keys) -> dict:
    """``state`` with each tensor of ``keys`` given the signs of ``signs``'s (magnitudes kept; +0 counts as +)."""
    import torch

    out = dict(state)
    for key in keys:
        out[key] = torch.copysign(state[key].abs(), signs[key].to(state[key].dtype))
    return out


def describe(branch: Branch) -> dict:
    """What a run's provenance records about its branch."""
    return {"name": branch.name, "rewind": branch.rewind, "mask": branch.mask, "weights": branch.weights}
