"""Analysis: tidy tables in, paper tables, figures and summaries out.

Nothing here reads the results tree by path: every function takes tidy pandas
DataFrames (see ``tidy`` for the expected columns), so the same code serves
the workflow, the tests and a notebook.
"""
