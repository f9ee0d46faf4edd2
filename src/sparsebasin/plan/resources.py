"""What each job asks the scheduler for: threads, memory (MB) and runtime (minutes), from the cards' cost hints.

Runtime grows with the retry ``attempt``, so a job killed at its time limit is
resubmitted with more time (and resumes from its ``.resume.pt``). The cost
model: ``epoch_minutes`` of the architecture card (one CIFAR-sized epoch at
width 1 on one GPU) x the dataset card's ``scale`` x ``max(1, (w /
width_ref) ** width_exponent)``, times ``cpu_slowdown`` on a CPU.
"""

from __future__ import annotations

import math

from .. import registry

FIXED_MINUTES = 5


def epoch_minutes(model: str, dataset: str, width: int, device: str) -> float:
    cost = registry.architecture(model)["cost"]
    scale = max(1.0, (int(width) / cost["width_ref"]) ** cost["width_exponent"])
    minutes = cost["epoch_minutes"] * registry.dataset(dataset)["scale"] * scale
    return minutes * cost["cpu_slowdown"] if device == "cpu" else minutes


def train_minutes(model: str, dataset: str, width: int, epochs: float, attempt: int, device: str,
                  runtime_factor: float, fixed: float = FIXED_MINUTES) -> int:
    """resources.runtime of a job costing ``epochs`` training epochs."""
    est = fixed + epochs * epoch_minutes(model, dataset, width, device)
    return int(math.ceil(est * 1.5 * runtime_factor * attempt))


def train_mem(model: str, dataset: str, width: int, attempt: int) -> int:
    base = registry.dataset(dataset)["host_mem_mb"]
    extra = registry.architecture(model)["cost"]["mem_mb_per_width2"] * int(width) ** 2
    return int((base + extra) * (1 + 0.5 * (attempt - 1)))


def light_mem(attempt: int) -> int:
    return 2000 * attempt


def light_runtime(attempt: int) -> int:
    return 10 * attempt


# What a fused job's process holds besides its runs: the CUDA context, cuDNN workspaces, the data.
FUSED_OVERHEAD_MB = 1500


def run_device_mem_mb(model: str, width: int, batch_size: int, scale: float = 1.0) -> float | None:
    """Device memory of one run in a fused group: activations kept for backward (linear in width) and
    weights, gradients, momentum and mask (quadratic); None when the card has no memory hints.

    ``scale``: input pixels relative to the card's reference (ImageNet crops for ResNet50: 1).
    """
    cost = registry.architecture(model)["cost"]
    if "act_mb_per_image" not in cost or "params_m" not in cost:
        return None
    acts = batch_size * cost["act_mb_per_image"] * width * scale
    state = cost["params_m"] * 1e6 * width ** 2 * 4 * 4 / 2 ** 20
    return acts + state


def fused_group_size(model: str, width: int, batch_size: int, budget_mb: int) -> int | None:
    """Runs per fused job under a device-memory budget (``fused_memory_mb``); None: no limit (budget 0)."""
    if not budget_mb:
        return None
    per_run = run_device_mem_mb(model, width, batch_size)
    if per_run is None:
        return None
    return max(1, int((budget_mb - FUSED_OVERHEAD_MB) // per_run))


def fused_epochs(epochs: float, n_runs: int) -> float:
    """The stacked runs share one pass over the data: cheaper than n separate runs."""
    return epochs * max(1.0, 0.5 * n_runs)
