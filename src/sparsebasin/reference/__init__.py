"""The paper's published numbers, as data: what the scorecard and the figures' "paper" lines compare with.

Adnan et al., "Sparse Training from Random Initialization: Aligning Lottery
Ticket Masks using Weight Symmetry", ICML 2025 (PMLR v267), arXiv 2505.05143:
its result tables transcribed as tidy CSV (this folder's README says which
table is where). Accuracies are percent, ``std`` the sample std (ddof=1)
over ``n`` runs, empty for single runs (Table 10). Edit nothing here: these
are published facts.
"""

from __future__ import annotations

from importlib import resources

TABLES = {
    "accuracy": "paper_accuracy.csv",  # Tables 5-14
    "early_matching": "paper_early_matching.csv",  # Table 15
    "diversity": "paper_diversity.csv",  # Table 1
}
SOURCE = ("Adnan, Jain, Sharma, Krishnan, Ioannou, ICML 2025 (PMLR v267), arXiv 2505.05143, "
          "Tables 1, 5-15")


def path(name: str):
    """The packaged CSV of a reference table (``accuracy``, ``early_matching``, ``diversity``)."""
    return resources.files(__name__).joinpath(TABLES[name])


def load(name: str):
    """A reference table as a DataFrame with numeric columns parsed (empty cells are NaN)."""
    import pandas as pd

    with path(name).open() as fh:
        df = pd.read_csv(fh)
    for col in ("width", "sparsity", "k", "match_epoch", "n", "mean", "std"):
        if col in df.columns:
            df[col] = pd.to_numeric(df[col], errors="coerce")
    return df


__all__ = ["TABLES", "SOURCE", "path", "load"]
