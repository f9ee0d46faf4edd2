"""What the machine and the libraries can do, checked once per step before any work (``cli.main``).

A resource option beyond them used to fail late and badly: ``--threads
100000`` in a segfault inside the OpenMP runtime (exit -11, no message), a
model too large for memory (``--hidden 1000000000000``, ``--width
1000000000``) in a 41-line allocator traceback after the data had loaded, a
seed of 2**64 in an overflow traceback. ``check`` adjusts what can be adjusted
with one warning (threads: clamped to the CPUs this process may run on) and
refuses the rest in one line (``UserError``) with the numbers.

The model check builds the model on torch's meta device (shapes, no memory)
to count its parameters and the inputs its weighted layers keep for backward,
then compares a lower bound of what training holds (fp32 weights and
gradients, one process's batch of those inputs in bf16) with the memory the
run's device has available: a refusal is certain, a marginal model is left to
try (and its out-of-memory error is one line too, cli.py). The build itself is guarded: it stops as soon as
the parameters counted so far cannot fit, past ``MAX_MODULES`` modules, or
when the builder's own bookkeeping outgrows ``DESCRIBE_BYTES`` (an address
space limit while it runs), so an absurd size is refused in a second instead
of being allocated. Output and temporary names are checked against the file
system's name limit (a provenance sidecar adds ``.provenance.json``).

Importing this module does not import torch (the workflow's config check reads
``MAX_SEED``).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
from pathlib import Path

from .errors import UserError
from .progress import log

# torch.manual_seed accepts [0, 2**64), but seeds also land in int64 tensors and tables: every seed a step takes,
# and every seed the workflow derives from a config's seed index (dense 2s+1, sparse 1000+s), stays below 2**63.
MAX_SEED = 2**63 - 1
MAX_MODULES = 100_000  # far above any real network here (ResNet-50: ~150); the meta build stops past it
DESCRIBE_BYTES = 2 * 2**30  # host memory the meta build may take for its own bookkeeping


def cpus() -> int:
    """CPUs this process may run on (its affinity mask: a SLURM job's cores, a taskset), else the machine's."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def clamp_threads(args: argparse.Namespace) -> None:
    """More torch threads than CPUs only slows a run, and past the OpenMP runtime's own limit it segfaults."""
    n = getattr(args, "threads", None)
    if n is not None and n > cpus():
        log(f"warning: --threads {n} is more than the {cpus()} CPU(s) this process may use; using {cpus()}")
        args.threads = cpus()


def check_names(paths) -> None:
    """Every declared output (and run directory) has a name the file system can hold; the temporary names of
    atomic writes are cut to fit (io.fitted_name), but a declared name is what the user asked for."""
    from .io import name_limit

    for option, path in [*paths.outputs, *paths.out_dirs]:
        name = Path(path).name
        limit = name_limit(Path(path).parent)
        size = len(os.fsencode(name))
        if size > limit:
            raise UserError(f"{option}: the name {name[:40]}... is {size} bytes, more than the {limit} the file system "
                            f"allows in {Path(path).parent}; choose a shorter name")


# ---------------------------------------------------------------- memory --

def host_available() -> int | None:
    """Bytes of host memory this process can still get: MemAvailable, or less under a cgroup (v2 or v1) limit."""
    found = []
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        with contextlib.suppress(OSError, ValueError):
            limit = Path(limit_file).read_text(encoding="utf-8").strip()
            if limit != "max" and int(limit) < 2**60:
                found.append(int(limit) - int(Path(usage_file).read_text(encoding="utf-8").strip()))
    return max(0, min(found)) if found else None


def device_available(device: str) -> tuple[int | None, str]:
    """(bytes available, what) for the device a step will run on; (None, ...) when it cannot be told here."""
    import torch

    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if not cuda:
        return host_available(), "host memory available"
    if not torch.cuda.is_available():
        return None, ""  # the step says that no CUDA device is visible
    index = int(device.split(":", 1)[1]) if ":" in device else int(os.environ.get("LOCAL_RANK", 0))
    try:
        free, _total = torch.cuda.mem_get_info(index)
    except Exception:  # noqa: BLE001 - an index beyond the devices: the step says so itself
        return None, ""
    return int(free), f"free on cuda:{index}"


class _TooLarge(Exception):
    pass


def _fmt(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        if n < 1024 or unit == "EiB":
            return f"{n:.3g} {unit}"
        n /= 1024
    return f"{n:.3g}"


@contextlib.contextmanager
def _address_space(extra: int):
    """Let the process map at most ``extra`` more bytes while the body runs (a huge list is a MemoryError)."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        mapped = int(Path("/proc/self/statm").read_text(encoding="utf-8").split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (ImportError, OSError, ValueError):
        yield
        return
    want = mapped + extra
    if hard != resource.RLIM_INFINITY:
        want = min(want, hard)
    if soft != resource.RLIM_INFINITY and soft <= want:
        yield
        return
    resource.setrlimit(resource.RLIMIT_AS, (want, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def describe_model(model_cfg: dict, dataset: str, budget_params: float) -> tuple[int, int | None]:
    """(parameters, activation elements one example keeps at least) of the model, built on the meta device.

    Raises ``_TooLarge`` as soon as more than ``budget_params`` parameters (or ``MAX_MODULES`` modules) have
    been registered, or when the builder runs out of ``DESCRIBE_BYTES``; the activations are None when the
    model cannot run on the meta device.
    """
    import torch
    from torch.nn.modules import module as torch_module

    from . import registry
    from .models import build_model

    card = registry.dataset(dataset)
    count = {"params": 0, "modules": 0}

    def on_param(_module, _name, param):
        if param is not None:
            count["params"] += param.numel()
            if count["params"] > budget_params:
                raise _TooLarge(f"at least {count['params']:.3g} parameters")

    def on_module(_module, _name, _sub):
        count["modules"] += 1
        if count["modules"] > MAX_MODULES:
            raise _TooLarge(f"more than {MAX_MODULES} modules")

    hooks = [torch_module.register_module_parameter_registration_hook(on_param),
             torch_module.register_module_module_registration_hook(on_module)]
    try:
        with _address_space(DESCRIBE_BYTES), torch.device("meta"):
            model = build_model(model_cfg, card["num_classes"], card["in_channels"],
                                input_size=math.prod(card["input_shape"]))
    except MemoryError:
        raise _TooLarge(f"describing its layers needs more than {_fmt(DESCRIBE_BYTES)}") from None
    except RuntimeError as exc:  # a shape past int64 (a width of 1e9 squared)
        if "overflow" in str(exc).lower() or "too large" in str(exc).lower():
            raise _TooLarge(f"a tensor too large for torch ({str(exc).splitlines()[0][:80]})") from None
        raise
    finally:
        for h in hooks:
            h.remove()
    params = sum(p.numel() for p in model.parameters())
    kept = [0]

    def on_input(_module, inputs):
        kept[0] += sum(x.numel() for x in inputs if isinstance(x, torch.Tensor))

    # a layer with weights keeps its input for the weight gradient: a lower bound of what backward needs
    weighted = [m for m in model.modules() if any(True for _ in m.parameters(recurse=False))]
    handles = [m.register_forward_pre_hook(on_input) for m in weighted]
    try:
        model.eval()  # the shapes of training; a batch of one is fine for BatchNorm here
        with torch.no_grad():
            model(torch.empty((1, *card["input_shape"]), device="meta"))
        acts = kept[0]
    except Exception:  # noqa: BLE001 - an op without a meta kernel: parameters alone then
        acts = None
    finally:
        for h in handles:
            h.remove()
    return int(params), acts


def _batch_size(args: argparse.Namespace) -> int:
    if getattr(args, "batch_size", None):
        return int(args.batch_size)
    preset = getattr(args, "preset", None)
    if preset:
        with contextlib.suppress(Exception):
            from .training.config import resolve_config

            return int(resolve_config(preset).batch_size)
    return 1


def check_model_memory(args: argparse.Namespace) -> None:
    """Refuse, in one line with the estimate, a model whose training state cannot fit the device's memory."""
    if not getattr(args, "model", None) or getattr(args, "init", None) or not getattr(args, "dataset", None):
        return  # a model taken from a checkpoint was built once already
    from .steps.common import model_cfg_from_args

    available, where = device_available(getattr(args, "device", "cpu") or "cpu")
    if available is None:
        return
    runs = max(1, len(getattr(args, "run", None) or []))  # a fused group holds every member at once
    batch = max(1, _batch_size(args) // max(1, int(os.environ.get("WORLD_SIZE", 1))))  # one process's share
    cfg = model_cfg_from_args(args)
    what = f"model {cfg['name']} ({', '.join(f'{k} {v}' for k, v in cfg.items() if k != 'name')})"
    options = ["--width", *(f"--{k.replace('_', '-')}" for k in cfg if k not in ("name", "width"))]  # its card's
    sizes = " or ".join([", ".join(options[:-1]), options[-1]] if len(options) > 1 else options)
    # At least: fp32 weights and gradients (8 bytes a parameter; momentum, the optimizer's, comes on top) and the
    # inputs the weighted layers keep for backward in bf16 (2 bytes; fp32 doubles it). A refusal is certain.
    state = 8
    try:
        params, acts = describe_model(cfg, args.dataset, budget_params=available / (state * runs))
    except _TooLarge as exc:
        if "parameters" in str(exc):
            raise UserError(f"{what} has {exc}: {state} bytes each while training (weights and gradients) is "
                            f"more than the {_fmt(available)} {where}; lower {sizes}") from None
        raise UserError(f"{what} cannot be built: {exc} (on the meta device, without any weights); "
                        f"lower {sizes}") from None
    need = runs * (state * params + 2 * batch * (acts or 0))
    if need > available:
        detail = f"{params:.3g} parameters x {state} bytes" + (
            f" + the activations a batch of {batch} keeps, {_fmt(2 * batch * acts)}" if acts else "")
        raise UserError(f"{what} needs at least {_fmt(need)} to train ({detail}"
                        + (f"; x {runs} fused runs" if runs > 1 else "") + f") but {_fmt(available)} is {where}; "
                        f"lower {sizes} or --batch-size")


def check_generated_data(args: argparse.Namespace) -> None:
    """A generated dataset (prepare's --n-train/--n-test, MNIST-1D) must fit host memory: 10**12 examples would
    otherwise grow for years before the allocator gave up."""
    n = sum(getattr(args, k, None) or 0 for k in ("n_train", "n_test"))
    if not n or not getattr(args, "dataset", None):
        return
    from . import registry

    card = registry.dataset(args.dataset)
    need = n * math.prod(card["input_shape"]) * 4  # float32 examples, a lower bound of what generation holds
    available = host_available()
    if available is not None and need > available:
        raise UserError(f"--n-train/--n-test: {n:.3g} {card['label']} examples of {math.prod(card['input_shape'])} "
                        f"values need at least {_fmt(need)} (4 bytes each), more than the {_fmt(available)} of host "
                        "memory available; ask for fewer examples")


def check(args: argparse.Namespace, paths) -> None:
    """Every check of this module, for one parsed step (``cli.main``)."""
    check_names(paths)
    clamp_threads(args)
    check_generated_data(args)
    check_model_memory(args)
