"""What each job asks the scheduler for: threads, memory (MB) and runtime (minutes), from the cards' cost hints.

Runtime grows with the retry ``attempt`` up to ``max_runtime`` (config, default
24 h): above a partition's MaxTime a job pends forever, and long requests defeat
backfill, so a longer job is cut there and finishes in pieces, each retry
resuming from its ``.resume.pt`` (the profiles' ``retries``).

Epoch time on a GPU is the larger of the card's ``epoch_minutes`` x the
dataset's ``scale`` (a width-1 epoch, where a small model is bound by kernel
launches and data) and the FLOPs: ``n_train x 3 x gflops_per_image x w^2`` at
``GPU_TFLOPS`` effective (a fifth of an A100's bf16 peak on convnets), or,
when the config names a ``throughput`` file measured on CUDA by
``benchmarks/gpu_check.py``, the measured images/s of that model and width
(CIFAR-shaped datasets). On a
CPU: ``epoch_minutes x scale x max(1, (w / width_ref) ** width_exponent) x
cpu_slowdown``. Host memory: the dataset's ``host_mem_mb``, the process
(torch, CUDA libraries), the model's state on the host (checkpoints) and, on
a CPU, the activations of a training step; not width squared.
"""

from __future__ import annotations

import math

from .. import registry

FIXED_MINUTES = 5
MAX_RUNTIME = 24 * 60  # minutes; the config's max_runtime
GPU_TFLOPS = 60.0  # effective training TFLOPS of one GPU on convnets (benchmarks/bench_grid_cost.py)
PROCESS_MB = {"cpu": 1500, "cuda": 3000}  # python + torch (+ the CUDA libraries) of one job


MEASURED_SHAPE = [3, 32, 32]  # gpu_check.py and bench_throughput.py time CIFAR-shaped images


def measured_rates(payload: dict) -> dict[tuple[str, str], float]:
    """Images/s per (model, width) from a throughput.json measured on CUDA (``{}`` for one measured on CPU).

    gpu_check.py writes every model under "models", bench_throughput.py ResNet20 widths under "widths";
    each entry's median round counts.
    """
    if not str(payload.get("device", "")).startswith("cuda"):
        return {}
    models = payload.get("models") or {"resnet20": payload.get("widths", {})}
    out = {}
    for model, widths in models.items():
        for w, entry in widths.items():
            rates = sorted(float(r) for r in entry["ours_images_per_s"])
            out[(str(model), str(w))] = rates[len(rates) // 2]
    return out


def load_throughput(path) -> dict[tuple[str, str], float]:
    """``measured_rates`` of the config's ``throughput`` file, or ValueError with what is wrong with it."""
    import json
    from pathlib import Path

    try:
        payload = json.loads(Path(path).read_text(encoding="utf-8"))
        return measured_rates(payload)
    except OSError as exc:
        raise ValueError(f"cannot read it ({exc.strerror})") from None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"not a throughput.json of benchmarks/gpu_check.py ({type(exc).__name__}: {exc})") from None


def epoch_minutes(model: str, dataset: str, width: int, device: str, measured: dict | None = None) -> float:
    """Minutes per training epoch; on a GPU the measured images/s (``measured_rates``) where they apply."""
    cost, data = registry.architecture(model)["cost"], registry.dataset(dataset)
    if device == "cpu":
        scale = max(1.0, (int(width) / cost["width_ref"]) ** cost["width_exponent"])
        return cost["epoch_minutes"] * data["scale"] * scale * cost["cpu_slowdown"]
    n_train = data.get("n_train", 50_000)
    rate = (measured or {}).get((model, str(width)))
    if rate and list(data.get("input_shape", [])) == MEASURED_SHAPE:
        return n_train / rate / 60
    flops = n_train * 3 * cost["gflops_per_image"] * 1e9 * int(width) ** 2
    return max(cost["epoch_minutes"] * data["scale"], flops / (GPU_TFLOPS * 1e12) / 60)


def train_minutes(model: str, dataset: str, width: int, epochs: float, attempt: int, device: str,
                  runtime_factor: float, fixed: float = FIXED_MINUTES, max_runtime: int = MAX_RUNTIME,
                  measured: dict | None = None) -> int:
    """resources.runtime of a job costing ``epochs`` training epochs, at most ``max_runtime`` minutes."""
    est = fixed + epochs * epoch_minutes(model, dataset, width, device, measured)
    return min(int(max_runtime), int(math.ceil(est * 1.5 * runtime_factor * attempt)))


def train_mem(model: str, dataset: str, width: int, attempt: int, device: str = "cpu", batch_size: int = 128,
              runs: int = 1) -> int:
    """Host memory (MB) of a training or evaluation job of ``runs`` runs (a fused job holds every member)."""
    cost = registry.architecture(model)["cost"]
    mb = registry.dataset(dataset)["host_mem_mb"] + PROCESS_MB["cpu" if device == "cpu" else "cuda"]
    mb += runs * 3 * cost.get("params_m", 0.0) * 1e6 * int(width) ** 2 * 4 / 2 ** 20  # weights, momentum, a checkpoint
    if device == "cpu":  # the step's activations live on the host too
        mb += runs * batch_size * cost.get("act_mb_per_image", 0.0) * int(width)
    return int(mb * (1 + 0.5 * (attempt - 1)))


def light_mem(attempt: int) -> int:
    return 2000 * attempt


def light_runtime(attempt: int) -> int:
    return 10 * attempt


# What a fused job's process holds besides its runs: the CUDA context, cuDNN workspaces, the data.
FUSED_OVERHEAD_MB = 1500


def run_device_mem_mb(model: str, width: int, batch_size: int) -> float | None:
    """Device memory of one run in a fused group: activations kept for backward (linear in width) and
    weights, gradients, momentum and mask (quadratic); None when the card has no memory hints."""
    cost = registry.architecture(model)["cost"]
    if "act_mb_per_image" not in cost or "params_m" not in cost:
        return None
    acts = batch_size * cost["act_mb_per_image"] * width
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
