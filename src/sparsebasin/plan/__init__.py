"""What the workflow runs, decided from the config before anything runs (torch-free).

``plan.config``: the config checks (YAML, numbers, schema, labels, IMP rounds).
"""
