"""Weight symmetry: permutation specs, applying permutations, matching, linear mode connectivity.

- ``spec``: which permutation group acts on each axis of each state-dict key.
- ``apply``: permute (or un-permute) any state dict keyed like the model.
- ``matching``: activation matching and weight matching of model A to model B.
- ``lmc``: interpolation, BN reset, REPAIR, barriers, the plane through three models.

The package itself imports nothing heavy: the option records (``align.MatchOptions``,
``landscape.EvalOptions``) are read by the torch-free planner, and the names below load
their torch modules on first use.
"""

import importlib

_LAZY = {"check_perm": "apply", "identity_perm": "apply", "invert": "apply", "permute_state": "apply",
         "random_perm": "apply", "PermutationSpec": "spec", "permutation_spec": "spec"}

__all__ = [
    "PermutationSpec", "permutation_spec", "permute_state", "invert", "check_perm", "random_perm", "identity_perm",
]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
