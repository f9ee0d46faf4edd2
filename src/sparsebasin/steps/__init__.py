"""CLI wrappers, one module per pipeline step (see sparsebasin.cli.STEPS)."""
