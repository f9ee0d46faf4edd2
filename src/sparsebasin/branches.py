"""The runs the paper compares, as one fact every layer reads (torch-free).

A sparse branch is a masked run from rewind point k; what differs between
branches is only which dense model it rewinds to and which mask it uses:

- ``lth``:      A's checkpoint at k with A's mask m_A
- ``naive``:    B's checkpoint at k with m_A
- ``permuted``: B's checkpoint at k with pi(m_A)

``dense`` (A and B) and ``imp`` (the pruned and fine-tuned A) are the
references tables and figures show beside them.
"""

from __future__ import annotations

SPARSE_BRANCHES = ("lth", "naive", "permuted")
BRANCHES = SPARSE_BRANCHES  # what --branch accepts
REFERENCES = ("dense", "imp")
ALL_BRANCHES = REFERENCES + SPARSE_BRANCHES  # display order: references first

# branch -> (dense model it rewinds to, whether its mask is the permuted one)
REWIND_NET = {"lth": "A", "naive": "B", "permuted": "B"}
PERMUTED_MASK = {"lth": False, "naive": False, "permuted": True}
