"""Weight symmetry: permutation specs, applying permutations, matching, linear mode connectivity.

- ``spec``: which permutation group acts on each axis of each state-dict key.
- ``apply``: permute (or un-permute) any state dict keyed like the model.
- ``matching``: activation matching and weight matching of model A to model B.
- ``lmc``: interpolation, BN reset, REPAIR, barriers, the plane through three models.
"""

from .apply import check_perm, identity_perm, invert, permute_state, random_perm
from .spec import PermutationSpec, permutation_spec

__all__ = [
    "PermutationSpec", "permutation_spec", "permute_state", "invert", "check_perm", "random_perm", "identity_perm",
]
