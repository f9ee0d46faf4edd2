"""One command that exercises every device code path of the pipeline and says PASS or FAIL for each.

On a GPU node (at most about 5 minutes on one GPU):

    .venv/bin/python benchmarks/gpu_check.py                   # --device auto: cuda when there is one
    .venv/bin/python benchmarks/gpu_check.py --device cuda:1

and on CPU inside the test suite, so that it cannot rot (tests/test_gpu_check.py, under a minute):

    .venv/bin/python benchmarks/gpu_check.py --device cpu --quick

Every step runs through the real CLI (``sparsebasin.cli.main``), in this
process, on a CIFAR-10-shaped synthetic dataset written in the real on-disk
layout (``sparsebasin.data.cifar.write_synthetic``; learnable, so accuracies
mean something): dense training (fp32 and bf16), IMP-FT pruning, the three
sparse branches (pi(m_A) applied in memory), the same branches as one fused
job, activation matching, interpolation in every mode, the plane, an
ensemble. Checks, one line each:

- the steps finish and record the device they ran on;
- pruned weights are exactly zero after masked training (prune, sparse, fused);
- bf16 and fp32 dense training agree in final test accuracy within
  ``--bf16-tolerance`` points (on CPU autocast is off, so they are equal);
- fused equals separate training within ``--fused-tolerance`` (relative L2
  of the final weights, both in fp32);
- interpolation curves and the plane are finite, the ensemble's numbers in range;
- two ``--deterministic`` runs give bit-identical weights (cudnn.benchmark off,
  deterministic algorithms; without it CUDA runs may differ in the last bits);
- each ``--compile`` mode (graphs, inductor; ``--quick``: inductor on a small
  MLP) gives final weights within ``--compile-tolerance`` of eager, with its
  images/s against eager's;
- the training step waits on the host at most once per 25 steps (CUDA's
  sync-debug mode, plus host reads, tensors made from Python numbers and
  host-side random draws, which CPU counts too), single and fused;
- a resume state saved with more CUDA devices than are visible restores
  (the GPU-count change of a SLURM requeue);
- the ImageNet GPU input path, when this version has one (else SKIP);
- two processes under torchrun (NCCL on 2+ GPUs; gloo on CPU; one GPU:
  SKIP) train ResNet20x1 with ``--sync-bn`` within ``--dp-tolerance`` of
  the one-process run.

Then images/s of ResNet20 x1/x4/x16 and VGG11 (``--quick``: ResNet20 x1 and
VGG11 x1) for our trainer against the conventional DataLoader + PIL
transforms + ``torch.nn.utils.prune`` hooks baseline
(``bench_throughput.baseline_epoch``), alternating, written to
``--throughput`` (default ``benchmarks/results/throughput.json``, which
``bench_grid_cost.py`` reads for GPU-hours when it was measured on CUDA).
The last line is "N passed, M failed"; the exit status is 1 when any failed.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import csv
import io as _io
import json
import math
import os
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

from _bench import RESULTS, load_average, machine

from sparsebasin import cli, device as devices
from sparsebasin.checkpoints import load_checkpoint, load_mask
from sparsebasin.data import cifar, dataset_info

SIZES = {  # quick (CPU, inside the test suite) / full (one GPU, minutes)
    True: {"n_train": 128, "n_test": 64, "epochs": 1, "batch": 32, "tp_batches": 2, "tp_rounds": 1,
           "models": [("resnet20", 1), ("vgg11", 1)]},
    False: {"n_train": 10_000, "n_test": 2_000, "epochs": 3, "batch": 128, "tp_batches": 40, "tp_rounds": 3,
            "models": [("resnet20", 1), ("resnet20", 4), ("resnet20", 16), ("vgg11", 1)]},
}


class Report:
    """PASS / FAIL / SKIP lines and the final count."""

    def __init__(self) -> None:
        self.passed = self.failed = self.skipped = 0

    def line(self, status: str, name: str, detail: str) -> None:
        print(f"{status} {name}: {detail}", flush=True)

    def check(self, name: str, ok: bool, detail: str) -> bool:
        self.line("PASS" if ok else "FAIL", name, detail)
        if ok:
            self.passed += 1
        else:
            self.failed += 1
        return ok

    def skip(self, name: str, detail: str) -> None:
        self.skipped += 1
        self.line("SKIP", name, detail)

    @contextlib.contextmanager
    def guard(self, name: str):
        """A check whose code raised is a FAIL with the error, and the next checks still run."""
        try:
            yield
        except Exception as exc:  # noqa: BLE001 - reported, never hidden
            tb = traceback.format_exc(limit=3).strip().splitlines()
            self.check(name, False, f"{type(exc).__name__}: {exc} ({tb[-3].strip() if len(tb) > 2 else ''})")


def step(*argv) -> None:
    """One CLI step in process; its stderr is kept and shown only if it fails."""
    err = _io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(_io.StringIO()):
        status = cli.main([str(a) for a in argv])
    if status != 0:
        raise RuntimeError(f"`sparsebasin {' '.join(map(str, argv[:1]))}` exited {status}: "
                           f"{err.getvalue().strip().splitlines()[-1:]}")


def rel_l2(a: dict, b: dict, buffers: bool = True) -> float:
    """|b - a| / |a| over the floating tensors of two state dicts (``buffers``: BN running statistics too)."""
    keys = [k for k in a if a[k].is_floating_point() and (buffers or not k.endswith(("running_mean", "running_var")))]
    diff = math.sqrt(sum(float((a[k] - b[k]).double().pow(2).sum()) for k in keys))
    return diff / math.sqrt(sum(float(a[k].double().pow(2).sum()) for k in keys))


def zero_violations(state: dict, mask: dict) -> int:
    """Pruned positions whose weight is not exactly zero."""
    return sum(int((state[k].float()[~m.bool()] != 0).sum()) for k, m in mask.items())


def result(run_dir: Path) -> dict:
    return json.loads((run_dir / "result.json").read_text())


class HostWaits:
    """Counts what would make the host wait on the device, or feed it, inside training steps.

    On CUDA: every synchronising call torch reports under
    ``torch.cuda.set_sync_debug_mode("warn")``. On every device: values read
    back to Python (``.item()``, ``.tolist()``, ``float(t)``), tensors built
    from Python numbers (on CUDA a blocking upload) and random draws on a CPU
    generator (host work whose result must then be uploaded). On CPU the
    last two kinds are the whole audit: the same code then passes on a GPU
    only if its copies are asynchronous.
    """

    HOST_OPS = {"aten._local_scalar_dense.default", "aten.lift_fresh.default"}
    DRAWS = ("aten.randperm", "aten.randint", "aten.rand", "aten.bernoulli", "aten.normal", "aten.random_")

    def __init__(self, dev: torch.device):
        self.dev, self.counts = dev, {}

    def reset(self) -> None:
        self.counts = {}

    def add(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1

    @contextlib.contextmanager
    def watching(self):
        import warnings

        from torch.utils._python_dispatch import TorchDispatchMode

        audit = self

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                name = str(func)
                gen = (kwargs or {}).get("generator")
                if name in audit.HOST_OPS or (name.startswith(audit.DRAWS) and gen is not None
                                              and gen.device.type == "cpu"):
                    audit.add(name.split(".")[1])
                return func(*args, **(kwargs or {}))

        tolist = torch.Tensor.tolist

        def counted_tolist(t):
            audit.add("tolist")
            return tolist(t)

        cuda = self.dev.type == "cuda"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.Tensor.tolist = counted_tolist
            if cuda:
                torch.cuda.set_sync_debug_mode("warn")
            try:
                with Mode():
                    yield self
            finally:
                if cuda:
                    torch.cuda.set_sync_debug_mode("default")
                torch.Tensor.tolist = tolist
        for w in caught:
            if "synchroniz" in str(w.message):
                self.add("cuda sync")

    def total(self) -> int:
        return sum(self.counts.values())


def audit_steps(engine, schedule, steps: int, names: list[str]) -> dict:
    """Host waits in the steps of one epoch after its first (which draws and uploads the epoch's order)."""
    from sparsebasin.progress import EpochProgress
    from sparsebasin.training.engines import HOST_CHECK_EVERY
    from sparsebasin.training.session import train_epoch

    engine.check_every = HOST_CHECK_EVERY  # as on CUDA (a CPU run looks after every step)
    audit = HostWaits(engine.dev)
    step_fn = engine.step

    def step_then_reset(x, y, _n=[0]):
        out = step_fn(x, y)
        _n[0] += 1
        if _n[0] == 1:
            audit.reset()
        return out

    engine.step = step_then_reset
    engine.start()
    engine.train()
    with audit.watching():
        train_epoch(engine, schedule, 0, steps, names, EpochProgress("audit", steps, "log", stream=_io.StringIO()))
    return {"waits": audit.total(), "counts": dict(audit.counts), "steps": steps - 1,
            "allowed": (steps - 1) // HOST_CHECK_EVERY + 1}


def compile_checks(rep: Report, tmp: Path, dev: torch.device, size: dict, args):
    """Each --compile mode against eager, in its own processes (the mode is a process setting): final weights
    within --compile-tolerance, images/s measured, on the CIFAR data. Full: ResNet20x1, the launch-bound case,
    one run after the other. --quick: a small MLP, started now and read by the returned function at the end
    (a cold compile is ~20 s of a CPU core: it overlaps the other checks instead of adding to them)."""
    import subprocess

    cache = Path(args.compile_cache) if args.compile_cache else tmp / "compile_cache"
    job = ["--dataset", "cifar10", "--data-dir", tmp / "data", "--batch-size", size["batch"], "--epochs", size["epochs"]]
    job += ["--model", "mlp", "--hidden", 16, "--depth", 1] if args.quick else ["--model", "resnet20", "--width", 1]
    job += ["--lr", 0.05, "--momentum", 0.9, "--device", dev, "--threads", args.threads, "--precision", "fp32",
            "--seed", 1, "--progress", "log"]
    modes = ("inductor",) if args.quick else ("graphs", "inductor")
    runs = {"eager": []} | {m: ["--compile", m, "--compile-cache", cache] for m in modes}

    def start(name: str):
        return subprocess.Popen([sys.executable, "-m", "sparsebasin", "train", *map(str, job), *map(str, runs[name]),
                                 "--out-dir", str(tmp / f"compile_{name}")], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)

    procs: dict[str, tuple] = {}

    def result(name: str) -> dict:
        if name not in procs:
            t0 = time.perf_counter()
            procs[name] = (start(name), t0)
        proc, t0 = procs[name]
        err = proc.communicate()[1]
        if proc.returncode != 0:
            raise RuntimeError(f"{name}: {err.strip().splitlines()[-1:]}")
        procs[name] = (proc, t0, time.perf_counter() - t0)
        return load_checkpoint(tmp / f"compile_{name}" / "final.pt")["state_dict"]

    if args.quick:
        for name in runs:
            procs[name] = (start(name), time.perf_counter())

    def finish() -> None:
        eager = None
        for mode in modes:
            with rep.guard(f"compile {mode}"):
                if eager is None:
                    eager = result("eager")
                rel = rel_l2(eager, result(mode))
                from bench_throughput import images_per_s

                speed = images_per_s(tmp / f"compile_{mode}") / images_per_s(tmp / "compile_eager")
                rep.check(f"compile {mode}", rel <= args.compile_tolerance,
                          f"{'MLP (quick)' if args.quick else 'ResNet20x1'} fp32: weights within {rel:.1e} of eager "
                          f"(relative L2, <= {args.compile_tolerance:g}); last epoch at {speed:.2f}x eager's "
                          f"images/s{' (its only epoch: compiling included)' if size['epochs'] == 1 else ''}; "
                          f"{procs[mode][2]:.0f} s with compiling (cache {cache})")

    return finish


def data_parallel_check(rep: Report, tmp: Path, dev: torch.device, args, train_args: list, reference: Path):
    """Two processes under torchrun (NCCL on 2+ GPUs, gloo on CPU) train ResNet20x1 with --sync-bn; started
    now, compared at the end with the one-process fp32 run ``reference`` of the same ``train_args``: final
    weights within --dp-tolerance, the processes and --sync-bn recorded. On one GPU: SKIP."""
    import subprocess

    if dev.type == "cuda" and torch.cuda.device_count() < 2:
        return lambda: rep.skip("data-parallel", f"needs 2 GPUs, {torch.cuda.device_count()} visible "
                                                 "(tests/test_distributed.py covers gloo on CPU)")
    out = tmp / "data_parallel"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "sparsebasin",
           "train", *map(str, train_args), "--device", dev.type, "--threads", str(args.threads), "--sync-bn",
           "--out-dir", str(out)]
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)

    def finish() -> None:
        with rep.guard("data-parallel"):
            err = proc.communicate(timeout=1800)[1]
            if proc.returncode != 0:
                raise RuntimeError(f"torchrun train: {err.strip().splitlines()[-1:]}")
            backend = next((line.split("backend ", 1)[1] for line in err.splitlines() if "distributed:" in line), "?")
            result = json.loads((out / "result.json").read_text())
            rel = rel_l2(load_checkpoint(reference / "final.pt")["state_dict"],
                         load_checkpoint(out / "final.pt")["state_dict"])
            rep.check("data-parallel", rel <= args.dp_tolerance and result["request"].get("processes") == 2
                      and result["request"].get("sync_bn") is True,
                      f"ResNet20x1 fp32 --sync-bn, 2 processes (backend {backend}) vs 1: weights within {rel:.1e} "
                      f"(relative L2, <= {args.dp_tolerance:g}), test acc {result['test_acc']:.4f}")

    return finish


def functional_checks(rep: Report, tmp: Path, dev: torch.device, size: dict, args) -> None:
    data = tmp / "data"
    cifar.write_synthetic("cifar10", data, size["n_train"], size["n_test"], seed=0)
    d = ["--dataset", "cifar10", "--data-dir", data]
    run = ["--device", str(dev), "--threads", str(args.threads)]
    optim = ["--epochs", size["epochs"], "--batch-size", size["batch"], "--lr", 0.05, "--momentum", 0.9,
             "--weight-decay", 5e-4, "--warmup-epochs", 0, "--progress", "log"]
    model = ["--model", "resnet20", "--width", 1]
    A, A16, B = tmp / "A", tmp / "A_bf16", tmp / "B"
    finish_compile = compile_checks(rep, tmp, dev, size, args)
    if not args.quick:
        finish_compile()
    dense = {A: ("fp32", 1), B: ("fp32", 2), A16: ("bf16", 1)}
    dense_args = {out: [*d, *model, *optim, "--precision", precision, "--seed", seed, "--save-epochs", "0"]
                  for out, (precision, seed) in dense.items()}
    finish_data_parallel = data_parallel_check(rep, tmp, dev, args, dense_args[A], A)

    with rep.guard("dense training"):
        t0 = time.perf_counter()
        for out, argv in dense_args.items():
            step("train", *argv, *run, "--out-dir", out)
        recorded = {result(p)["provenance"]["device"] for p in (A, B, A16)}
        rep.check("dense training", recorded == {str(dev)},
                  f"3 runs of ResNet20x1 in {time.perf_counter() - t0:.1f} s, recorded device {sorted(recorded)}")
    with rep.guard("bf16 vs fp32"):
        a32, a16 = result(A)["test_acc"], result(A16)["test_acc"]
        note = "" if dev.type == "cuda" else " (CPU: autocast is off, both are fp32)"
        rep.check("bf16 vs fp32", abs(a32 - a16) * 100 <= args.bf16_tolerance,
                  f"test accuracy {100 * a32:.2f}% fp32 vs {100 * a16:.2f}% bf16, "
                  f"|diff| {100 * abs(a32 - a16):.2f} <= {args.bf16_tolerance} pp{note}")

    with rep.guard("deterministic reruns"):
        import subprocess

        def det_run(out: Path) -> dict:
            # its own process: --deterministic switches torch's global settings for the rest of a process
            cmd = [sys.executable, "-m", "sparsebasin", "train", *map(str, d), *map(str, model), *map(str, optim),
                   *map(str, run), "--precision", "fp32", "--seed", "1", "--deterministic", "--out-dir", str(out)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                raise RuntimeError(proc.stderr.strip().splitlines()[-1:])
            return load_checkpoint(out / "final.pt")["state_dict"]

        x, y = det_run(tmp / "det1"), det_run(tmp / "det2")
        same = all(torch.equal(x[k], y[k]) for k in x)
        rep.check("deterministic reruns", same, "two --deterministic runs of ResNet20x1 (fp32): "
                  + ("bit-identical weights" if same else "weights differ"))

    P = tmp / "prune"
    with rep.guard("prune (IMP-FT)"):
        step("prune", "--checkpoint", A / "final.pt", "--targets", 0.5, "--rate", 0.5, "--mode", "ft",
             "--ft-epochs", 1, "--ft-lr", 0.01, *d, *run, "--precision", "fp32", "--progress", "log", "--out-dir", P)
        mask = load_mask(P / "S0.5" / "mask.pt")["mask"]
        bad = zero_violations(load_checkpoint(P / "S0.5" / "model.pt")["state_dict"], mask)
        rep.check("prune (IMP-FT)", bad == 0, f"50% mask, {bad} pruned weights nonzero after fine-tuning")

    perm = tmp / "perm.pt"
    with rep.guard("match"):
        step("match", "--a", A / "final.pt", "--b", B / "final.pt", *d, "--method", "activation", "--batches", 2,
             "--batch-size", size["batch"], *run, "--out", perm, "--summary", tmp / "perm.json")
        corr = json.loads((tmp / "perm.json").read_text())
        rep.check("match", math.isfinite(corr["mean_correlation"]) and
                  corr["mean_correlation"] >= corr["mean_correlation_identity"] - 1e-6,
                  f"mean correlation {corr['mean_correlation_identity']:.3f} -> {corr['mean_correlation']:.3f}")

    branches = {"lth": (A / "ckpt" / "epoch0.pt", []), "naive": (B / "ckpt" / "epoch0.pt", []),
                "permuted": (B / "ckpt" / "epoch0.pt", ["--mask-permutation", perm])}
    sparse_optim = [*optim, "--precision", "fp32"]
    with rep.guard("sparse branches"):
        from sparsebasin.symmetry.permfile import permute_artifact

        pmask = permute_artifact(perm, P / "S0.5" / "mask.pt")[1]["mask"]
        bad = {}
        t_separate = time.perf_counter()
        for branch, (init, extra) in branches.items():
            step("sparse", "--init", init, "--mask", P / "S0.5" / "mask.pt", *extra, "--branch", branch, *d,
                 *sparse_optim, *run, "--out-dir", tmp / "sparse" / branch)
            state = load_checkpoint(tmp / "sparse" / branch / "final.pt")["state_dict"]
            bad[branch] = zero_violations(state, pmask if branch == "permuted" else mask)
        t_separate = time.perf_counter() - t_separate
        rep.check("sparse branches", not any(bad.values()), f"pruned weights nonzero after training: {bad}")

    with rep.guard("fused = separate"):
        runs = []
        for branch, (init, extra) in branches.items():
            spec = f"out_dir={tmp / 'fused' / branch},init={init},mask={P / 'S0.5' / 'mask.pt'},branch={branch}"
            runs += ["--run", spec + (f",mask_permutation={perm}" if extra else "")]
        t_fused = time.perf_counter()
        step("fused", *d, *sparse_optim, *run, *runs)
        t_fused = time.perf_counter() - t_fused
        worst, bad = 0.0, 0
        for branch in branches:
            a = load_checkpoint(tmp / "sparse" / branch / "final.pt")["state_dict"]
            b = load_checkpoint(tmp / "fused" / branch / "final.pt")["state_dict"]
            worst = max(worst, rel_l2(a, b, buffers=False))
            bad += zero_violations(b, pmask if branch == "permuted" else mask)
        rep.check("fused = separate", worst <= args.fused_tolerance and bad == 0,
                  f"3 branches as one job (fp32): weights within {worst:.1e} of the separate runs' (relative L2, "
                  f"<= {args.fused_tolerance:g}); {bad} pruned weights nonzero; {t_separate:.1f} s separately, "
                  f"{t_fused:.1f} s fused")

    with rep.guard("interpolate, every mode"):
        from sparsebasin.symmetry.lmc import MODES

        step("interpolate", "--a", A / "final.pt", "--b", B / "final.pt", "--permutation", perm, *d, "--alphas", 3,
             "--modes", ",".join(MODES), "--batch-size", size["batch"], "--splits", "test", *run,
             "--out", tmp / "lmc.csv", "--barriers", tmp / "barriers.json")
        rows = list(csv.DictReader(open(tmp / "lmc.csv")))
        finite = all(math.isfinite(float(r["loss"])) for r in rows)
        rep.check("interpolate, every mode", finite and {r["mode"] for r in rows} == set(MODES),
                  f"{len(rows)} points over modes {', '.join(MODES)}, all finite: {finite}")

    with rep.guard("plane"):
        step("plane", "--origin", A / "final.pt", "--p1", tmp / "sparse" / "lth" / "final.pt",
             "--p2", tmp / "sparse" / "permuted" / "final.pt", "--p2-permutation", perm, "--inverse", *d,
             "--grid", 3, "--batch-size", size["batch"], *run, "--out", tmp / "plane.csv")
        rows = list(csv.DictReader(open(tmp / "plane.csv")))
        rep.check("plane", len(rows) >= 9 and all(math.isfinite(float(r["loss"])) for r in rows),
                  f"{len(rows)} points, finite")

    with rep.guard("ensemble"):
        step("ensemble", "--predictions", *(tmp / "sparse" / b / "predictions.pt" for b in branches),
             "--group", "check", "--out", tmp / "ensemble.json")
        e = json.loads((tmp / "ensemble.json").read_text())
        ok = 0 <= e["ensemble_acc"] <= 1 and 0 <= e["disagreement"] <= 1
        rep.check("ensemble", ok, f"3 members: ensemble accuracy {100 * e['ensemble_acc']:.1f}%, "
                                  f"disagreement {e['disagreement']:.3f}")

    with rep.guard("host waits per step"):
        from sparsebasin.data.base import ArrayDataset
        from sparsebasin.models import build_model, prunable_keys
        from sparsebasin.pruning import prune_to
        from sparsebasin.training import TrainConfig
        from sparsebasin.training.engines import HOST_CHECK_EVERY, SingleEngine
        from sparsebasin.training.fused import StackedEngine
        from sparsebasin.training.schedule import make_schedule
        from sparsebasin.training.session import Member

        steps = 2 * HOST_CHECK_EVERY + 1
        g = torch.Generator().manual_seed(0)
        bx = torch.randint(0, 256, (steps * 8, 3, 32, 32), generator=g, dtype=torch.uint8)
        ds = ArrayDataset(dataset_info("cifar10"), bx, torch.randint(0, 10, (steps * 8,), generator=g)).to(dev)
        cfg = TrainConfig(epochs=1, lr=0.01, batch_size=8, precision="bf16")
        torch.manual_seed(0)
        net = build_model({"name": "resnet20", "width": 1}, 10, 3)
        state = net.state_dict()
        mask = prune_to(state, {k: torch.ones_like(state[k], dtype=torch.bool) for k in prunable_keys(net)}, 0.9)
        found = {}
        member = Member(net, tmp / "audit", "audit", 0, mask)
        single = SingleEngine(member, cfg, dev, ds, True, False)
        found["single"] = audit_steps(single, make_schedule(cfg, single.optimizer, steps), steps, ["audit"])
        members = [Member(copy.deepcopy(net), tmp / f"audit{r}", f"audit{r}", r, mask) for r in range(3)]
        fused = StackedEngine(members, "grouped", cfg, dev, ds, True, False)
        found["fused x3"] = audit_steps(fused, make_schedule(cfg, fused.optimizer, steps), steps,
                                        [m.run_name for m in members])
        ok = all(f["waits"] <= f["allowed"] for f in found.values())
        rep.check("host waits per step", ok, "; ".join(
            f"{k}: {f['waits']} in {f['steps']} steps (at most {f['allowed']}: one per {HOST_CHECK_EVERY}) "
            f"{f['counts'] or ''}".rstrip() for k, f in found.items())
            + ", masked ResNet20x1 with crop+flip, after each epoch's first step")

    if args.quick:
        finish_compile()
    finish_data_parallel()

    with rep.guard("resume across a GPU-count change"):
        from sparsebasin.training import resume

        state = resume.rng_state()
        expected = torch.rand(4)
        entries = torch.cuda.device_count() + 2  # saved with more GPUs than are visible now
        resume.set_rng_state({**state, "cuda": [torch.zeros(16, dtype=torch.uint8)] * entries})
        rep.check("resume across a GPU-count change", torch.equal(torch.rand(4), expected),
                  f"an RNG state with {entries} CUDA entries restored with {torch.cuda.device_count()} visible")

    from sparsebasin.data import imagenet

    if hasattr(imagenet, "gpu_decoder"):
        with rep.guard("ImageNet GPU input"):
            rep.check("ImageNet GPU input", imagenet.gpu_decoder.self_check(dev), "decoded on the device")
    else:
        rep.skip("ImageNet GPU input", "this version has no GPU JPEG input path (the CPU PIL path is used)")


def throughput(rep: Report, dev: torch.device, size: dict, args) -> dict:
    """Images/s of our trainer vs the conventional pipeline per model; the throughput.json payload."""
    from bench_throughput import baseline_epoch, ours_epoch

    from sparsebasin.checkpoints import data_meta
    from sparsebasin.data.base import ArrayDataset
    from sparsebasin.models import build_model, prunable_keys
    from sparsebasin.pruning import prune_to
    from sparsebasin.training import TrainConfig

    info = dataset_info("cifar10")
    n = size["tp_batches"] * size["batch"]
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)
    y = torch.randint(0, 10, (n,), generator=g)
    hwc, targets = x.permute(0, 2, 3, 1).contiguous().numpy(), y.tolist()
    train_ds = ArrayDataset(info, x, y, "train")
    test_ds = ArrayDataset(info, x[:64].clone(), y[:64].clone(), "test")
    cfg = TrainConfig(epochs=1, lr=0.02, momentum=0.9, weight_decay=5e-4, batch_size=size["batch"],
                      eval_batch_size=64, augment="on", precision=args.precision)
    base_args = argparse.Namespace(batch_size=size["batch"], workers=args.workers)
    out = {"device": str(dev), "precision": args.precision, "batch_size": size["batch"], "batches": size["tp_batches"],
           "machine": machine(), "models": {}, "widths": {}}
    with tempfile.TemporaryDirectory(prefix="gpu_check_tp_") as tmp:
        for name, w in size["models"]:
            model_cfg = {"name": name, "width": w}
            torch.manual_seed(0)
            model = build_model(model_cfg, 10, 3)
            state = {k: v.clone() for k, v in model.state_dict().items()}
            keys = prunable_keys(model)
            mask = prune_to(state, {k: torch.ones_like(state[k], dtype=torch.bool) for k in keys}, 0.9)
            ours, base = [], []
            for r in range(size["tp_rounds"]):
                ours.append(ours_epoch(model_cfg, state, mask, train_ds, test_ds, cfg, Path(tmp) / f"{name}{w}_{r}",
                                       dev, data_meta(info), f"{name}x{w}"))
                secs, seen = baseline_epoch(state, mask, model_cfg, hwc, targets, info, base_args, dev)
                base.append(seen / secs)
            entry = {"ours_images_per_s": ours, "baseline_images_per_s": base,
                     "ratio": statistics.median(o / b for o, b in zip(ours, base))}
            out["models"].setdefault(name, {})[str(w)] = entry
            if name == "resnet20":
                out["widths"][str(w)] = entry  # the layout bench_grid_cost.py and bench_throughput.py share
            rep.line("MEASURED", f"throughput {name}x{w}",
                     f"ours {statistics.median(ours):.0f} img/s vs baseline {statistics.median(base):.0f} img/s "
                     f"-> {entry['ratio']:.2f}x ({size['tp_batches']} batches of {size['batch']}, "
                     f"{len(ours)} round(s), load {load_average():.1f})")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto", help="auto (cuda when there is one), cpu, cuda or cuda:N")
    p.add_argument("--quick", action="store_true", help="tiny sizes (the CPU run inside the test suite)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--workers", type=int, default=None, help="baseline DataLoader workers (default 8 on CUDA, 0 quick)")
    p.add_argument("--precision", default="bf16", choices=("bf16", "fp32"), help="training precision for throughput")
    p.add_argument("--bf16-tolerance", type=float, default=5.0, help="bf16 vs fp32 final accuracy, points")
    p.add_argument("--fused-tolerance", type=float, default=1e-3,
                   help="fused vs separate final weights, relative L2 (BatchNorm ResNets amplify summation-order "
                        "rounding step by step; tests/test_fused.py checks the first steps at 1e-5)")
    p.add_argument("--compile-tolerance", type=float, default=1e-3,
                   help="compiled vs eager final weights, relative L2 (other kernels round differently)")
    p.add_argument("--dp-tolerance", type=float, default=1e-2,
                   help="2-process --sync-bn vs 1-process final weights, relative L2 (summation order, and torch's "
                        "own BatchNorm rounding in the 1-process run: tests/test_distributed.py)")
    p.add_argument("--compile-cache", default=None, metavar="DIR",
                   help="compiled-kernel cache for the compile checks (default: a fresh one, so compiling is timed)")
    p.add_argument("--no-throughput", action="store_true", help="only the PASS/FAIL checks")
    p.add_argument("--throughput", default=None, metavar="JSON",
                   help="where to write the images/s (default benchmarks/results/throughput.json)")
    args = p.parse_args(argv)
    dev = devices.resolve(args.device)
    torch.set_num_threads(args.threads)
    if args.workers is None:
        args.workers = 0 if args.quick else (8 if dev.type == "cuda" else 2)
    size = SIZES[bool(args.quick)]
    rep = Report()
    t0 = time.perf_counter()
    gpu = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "none"
    print(f"gpu_check on {dev} (GPU {gpu}), torch {torch.__version__}, {'quick' if args.quick else 'full'} sizes, "
          f"load {load_average():.1f}", flush=True)
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        functional_checks(rep, Path(tmp), dev, size, args)
    if not args.no_throughput:
        with rep.guard("throughput"):
            payload = throughput(rep, dev, size, args)
            path = Path(args.throughput) if args.throughput else RESULTS / "throughput.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(payload, indent=2) + "\n")
            rep.line("WROTE", "throughput", str(path))
    print(f"{rep.passed} passed, {rep.failed} failed" + (f", {rep.skipped} skipped" if rep.skipped else "")
          + f" in {time.perf_counter() - t0:.0f} s", flush=True)
    return 1 if rep.failed else 0


if __name__ == "__main__":
    sys.exit(main())
