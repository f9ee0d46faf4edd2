"""Apply a permutation (or its inverse) to anything keyed like the model's state dict.

Convention (docs/architecture.md): ``perm[g][i]`` is the old unit placed at new
position ``i``, so every axis in group ``g`` becomes ``t.index_select(axis, perm[g])``.
The same function permutes weights, biases, BatchNorm buffers, a mask (a subset
of keys, bool tensors), a checkpoint of any epoch and SGD momentum buffers (a dict
keyed like the parameters): all of them transform like the tensor they belong to.
"""

from __future__ import annotations

from typing import Mapping

import torch

from ..errors import UserError
from .spec import PermutationSpec


def check_perm(spec: PermutationSpec, perm: Mapping, source: str = "permutation") -> dict[str, torch.Tensor]:
    """Validate ``perm`` against ``spec``; return it as CPU int64 tensors.

    Every group must be present (and no other), have the group's length and be
    a true permutation (each index exactly once).
    """
    if not isinstance(perm, Mapping):
        raise UserError(f"{source}: 'perm' is {type(perm).__name__}, not a dict of index tensors; rerun the match step")
    extra = [g for g in perm if g not in spec.sizes]
    if extra:
        raise UserError(f"{source} has group {extra[0]!r} unknown to {spec.arch}; it is a permutation for another architecture")
    out = {}
    for g, n in spec.sizes.items():
        if g not in perm:
            raise UserError(f"{source} lacks group {g!r} of {spec.arch}; it is for another architecture or incomplete, rerun the match step")
        p = perm[g]
        if not isinstance(p, torch.Tensor):
            p = torch.as_tensor(p)
        if p.dtype.is_floating_point or p.dtype == torch.bool or p.dim() != 1:
            raise UserError(f"{source} group {g!r} must be a 1-D integer index tensor, got {p.dtype} of shape {tuple(p.shape)}")
        if p.numel() != n:
            raise UserError(f"{source} group {g!r} has length {p.numel()}, expected {n} (another width?)")
        p = p.to("cpu", torch.int64)
        seen = torch.zeros(n, dtype=torch.bool)
        if n and (p.min() < 0 or p.max() >= n):
            raise UserError(f"{source} group {g!r} has an index outside 0..{n - 1}; not a permutation")
        seen[p] = True
        if not bool(seen.all()):
            raise UserError(f"{source} group {g!r} repeats an index; not a permutation (corrupt file?), rerun the match step")
        out[g] = p
    return out


def invert(perm: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse permutation: ``apply(invert(p), apply(p, x)) == x``."""
    return {g: torch.argsort(p) for g, p in perm.items()}


def compose(first: Mapping[str, torch.Tensor], second: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The permutation equal to applying ``first`` then ``second``."""
    return {g: first[g][second[g]] for g in first}


def identity_perm(spec: PermutationSpec) -> dict[str, torch.Tensor]:
    return {g: torch.arange(n) for g, n in spec.sizes.items()}


def random_perm(spec: PermutationSpec, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    return {g: torch.randperm(n, generator=generator) for g, n in spec.sizes.items()}


def permute_state(
    spec: PermutationSpec,
    perm: Mapping[str, torch.Tensor],
    state: Mapping[str, torch.Tensor],
    *,
    inverse: bool = False,
    source: str = "state dict",
) -> dict[str, torch.Tensor]:
    """Permute every tensor of ``state`` (any subset of the model's keys).

    Returns a new dict, same key order, dtypes and devices; the input is not
    modified (tensors with no permuted axis are shared, not copied). A key the spec does not know, or an axis of the wrong length,
    is a UserError naming ``source``: the file belongs to another architecture.
    """
    if inverse:
        perm = invert(perm)
    out: dict[str, torch.Tensor] = {}
    cache: dict[tuple[str, torch.device], torch.Tensor] = {}
    for key, t in state.items():
        if key not in spec.axes:
            raise UserError(f"{source} has key {key!r} which {spec.arch} does not have; it belongs to another architecture")
        groups = spec.axes[key]
        if not isinstance(t, torch.Tensor) or t.dim() != len(groups):
            raise UserError(f"{source} entry {key!r} is not a {len(groups)}-D tensor as in {spec.arch}")
        for axis, g in enumerate(groups):
            if g is None:
                continue
            if t.shape[axis] != spec.sizes[g]:
                raise UserError(
                    f"{source} entry {key!r} has {t.shape[axis]} units on axis {axis}, the permutation expects {spec.sizes[g]} (another width?)"
                )
            idx = cache.get((g, t.device))
            if idx is None:
                idx = cache[(g, t.device)] = perm[g].to(t.device, torch.int64)
            t = t.index_select(axis, idx)
        out[key] = t
    return out


__all__ = ["check_perm", "invert", "compose", "identity_perm", "random_perm", "permute_state"]
