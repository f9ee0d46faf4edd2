"""sparsebasin: aligning lottery-ticket masks across random inits with weight symmetry."""

__version__ = "0.1.0"
