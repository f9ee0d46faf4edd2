"""Permutation specs: which permutation group acts on each axis of each state-dict key.

The *structure* every model module describes for itself (``permutation_spec``
in ``sparsebasin/models/<name>.py``), built from the model instance with
``SpecBuilder`` so it cannot drift from the key names the model defines.
Layout is PyTorch's: Conv2d weight (out, in, kh, kw), Linear weight (out,
in), biases and BatchNorm weight/bias/running_mean/running_var carry the
channel group, ``num_batches_tracked`` carries none. The network input and
the class outputs are never permuted (axis group ``None``). The inverse view,
group -> [(key, axis), ...], is derived from ``axes``. Each group also names
its *matching point*: the module whose output (optionally after a ReLU)
gives the group's unit activations for activation matching. The operations
on specs (apply, match, interpolate) live in ``sparsebasin.symmetry``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from torch import nn

BN_KEYS = ("weight", "bias", "running_mean", "running_var")


@dataclass(frozen=True)
class PermutationSpec:
    """Axis groups per state-dict key, group sizes and matching points.

    ``axes[key][d]`` is the group acting on axis ``d`` of ``key`` (or None).
    ``sizes[group]`` is the number of units; ``match_points[group]`` is
    ``(module name, relu)``: hook that module's output, apply ReLU if set.
    Groups are listed from the input to the output.
    """

    arch: str
    axes: dict[str, tuple[str | None, ...]]
    sizes: dict[str, int]
    match_points: dict[str, tuple[str, bool]] = field(default_factory=dict)

    @property
    def groups(self) -> list[str]:
        return list(self.sizes)

    @cached_property
    def group_axes(self) -> dict[str, list[tuple[str, int]]]:
        """Derived inverse view: group -> every (key, axis) it permutes."""
        out: dict[str, list[tuple[str, int]]] = {g: [] for g in self.sizes}
        for key, groups in self.axes.items():
            for axis, g in enumerate(groups):
                if g is not None:
                    out[g].append((key, axis))
        return out


class SpecBuilder:
    """Collects axis groups key by key and checks them against the state dict."""

    def __init__(self, arch: str, model: nn.Module):
        self.arch = arch
        self.sd = model.state_dict()
        self.modules = dict(model.named_modules())
        self.axes: dict[str, tuple[str | None, ...]] = {}
        self.sizes: dict[str, int] = {}
        self.match_points: dict[str, tuple[str, bool]] = {}

    def group(self, name: str, match_module: str, relu: bool) -> str:
        self.sizes.setdefault(name, -1)
        self.match_points[name] = (match_module, relu)
        return name

    def _set(self, key: str, groups: tuple[str | None, ...]) -> None:
        if key not in self.sd:
            raise RuntimeError(f"{self.arch} spec names {key!r} which the model does not have")
        if key in self.axes:
            raise RuntimeError(f"{self.arch} spec assigns {key!r} twice")
        t = self.sd[key]
        if len(groups) != t.dim():
            raise RuntimeError(f"{self.arch} spec gives {key!r} {len(groups)} axes, tensor has {t.dim()}")
        for axis, g in enumerate(groups):
            if g is None:
                continue
            n = int(t.shape[axis])
            if self.sizes.get(g, -1) == -1:
                self.sizes[g] = n
            elif self.sizes[g] != n:
                raise RuntimeError(f"{self.arch} spec: {key} axis {axis} has {n} units but group {g} has {self.sizes[g]}")
        self.axes[key] = groups

    def conv(self, name: str, out_g: str | None, in_g: str | None) -> None:
        """Conv2d (out, in, kh, kw) or Linear (out, in), plus its bias if any."""
        w = self.sd[f"{name}.weight"]
        self._set(f"{name}.weight", (out_g, in_g) + (None,) * (w.dim() - 2))
        if f"{name}.bias" in self.sd:
            self._set(f"{name}.bias", (out_g,))

    linear = conv

    def bn(self, name: str, g: str) -> None:
        for k in BN_KEYS:
            self._set(f"{name}.{k}", (g,))
        if f"{name}.num_batches_tracked" in self.sd:
            self._set(f"{name}.num_batches_tracked", ())

    def build(self) -> PermutationSpec:
        missing = [k for k in self.sd if k not in self.axes]
        if missing:
            raise RuntimeError(f"{self.arch} spec misses keys {missing[:5]}")
        unsized = [g for g, n in self.sizes.items() if n < 1]
        if unsized:
            raise RuntimeError(f"{self.arch} spec: groups {unsized} act on no tensor")
        return PermutationSpec(self.arch, dict(self.axes), dict(self.sizes), dict(self.match_points))
