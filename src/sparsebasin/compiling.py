"""Opt-in compilation of the training step's model, for runs whose GPU waits on kernel launches.

A ResNet20 x1 or x4 or a VGG11 step is ~60 small kernels: on a current GPU
the launches, not the arithmetic, set the pace (about 45% busy). Two remedies,
both torch's own:

- ``inductor``: ``torch.compile`` (fused Triton kernels on CUDA, C++ on CPU);
- ``graphs``: the same kernels replayed as CUDA graphs (``torch.compile``
  mode ``reduce-overhead``): one launch per step. On CPU there are no CUDA
  graphs; the mode then runs the inductor kernels alone (the same code path,
  so it is tested here).

Compiled kernels round differently from eager ones, so a compiled run is
another run: the mode is recorded in the run request (as ``--deterministic``
is) and a rerun with another mode is refused as "other arguments". Only the
training forward and backward are compiled; evaluation, masks and optimizer
stay eager. Kernels go to a persistent cache (``--compile-cache``, default
``~/.cache/sparsebasin/torch_compile``; a shared filesystem serves every
node): the first compile of ResNet20 took 27 s on 2 CPU cores, a later
process 2.6 s from the cache.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import UserError

MODES = ("none", "graphs", "inductor")
_TORCH_MODE = {"graphs": "reduce-overhead", "inductor": "default"}
_MODE = "none"


def default_cache() -> Path:
    return Path(os.environ.get("SPARSEBASIN_COMPILE_CACHE") or Path.home() / ".cache" / "sparsebasin" / "torch_compile")


def configure(mode: str, cache: str | os.PathLike | None = None) -> None:
    """Set this process's compile mode; the cache directories are set before torch compiles anything."""
    global _MODE
    if mode not in MODES:
        raise UserError(f"unknown compile mode {mode!r}; use one of: {', '.join(MODES)}")
    _MODE = mode
    if mode == "none":
        return
    root = Path(cache) if cache else default_cache()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"--compile-cache {root}: cannot create it ({exc.strerror}); pass a writable directory") from exc
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(root / "inductor")
    os.environ["TRITON_CACHE_DIR"] = str(root / "triton")


def mode() -> str:
    return _MODE


def training_forward(model):
    """The callable the training step runs ``model`` through: the model itself, or its compiled form."""
    if _MODE == "none":
        return model
    import torch

    compiled = torch.compile(model, mode=_TORCH_MODE[_MODE])

    def forward(x):
        # a new step: CUDA-graph outputs of the last one may be overwritten (a no-op without CUDA graphs)
        torch.compiler.cudagraph_mark_step_begin()
        return compiled(x)

    return forward
