# The workflow's adapter to the library's plan: config checks, the run table, and
# the small functions the rules use to look a job up in it.
#
# Everything that decides *what* runs lives in src/sparsebasin/plan/ (torch-free,
# unit-tested): plan.config checks the config, plan.table builds one row per job
# (inputs, outputs, arguments, tags, cost), plan.paths holds the results tree,
# plan.reports the figures and tables of each experiment. Each rule file has one
# rule per job kind whose input, params and resources functions look the row up
# by the job's directory ({job}). The library is read from this repository's
# src/ so the Snakemake process needs no installed sparsebasin and never imports torch.

import os
import re
import shlex
import subprocess
import sys
from types import SimpleNamespace

from snakemake.exceptions import WorkflowError

sys.path.insert(0, os.path.join(workflow.basedir, "src"))
from sparsebasin import registry  # noqa: E402
from sparsebasin.plan import hooks, paths, reports, resources  # noqa: E402
from sparsebasin.plan.config import ConfigError, check as _check_config  # noqa: E402
from sparsebasin.plan.table import GROUPS, PRUNE_TARGET_FILES, TIDY, Plan  # noqa: E402
from sparsebasin.pruning.schedule import fmt_sparsity  # noqa: E402

CONDA_ENV = "../../envs/sparsebasin.yaml"  # relative to the rule files in workflow/rules/
GPU_SLOT = os.path.join(workflow.basedir, "workflow", "scripts", "gpu_slot.sh")


def config_error(message):
    """Stop with one line on stderr naming the config key and what to do."""
    print(f"config error: {message}", file=sys.stderr)
    raise SystemExit(1)


def _plan(cfg):
    schema = os.path.join(workflow.basedir, "workflow", "schemas", "config.schema.yaml")
    files = list(workflow.overwrite_configfiles) or [os.path.join(workflow.basedir, "config.yaml")]
    try:
        return Plan(_check_config(cfg, schema, files))
    except ConfigError as exc:
        config_error(str(exc))


PLAN = _plan(config)
EXPERIMENTS = config["experiments"]
DATA_DIR = config["data_dir"]
FUSED = bool(config["fused"])
CUDA = config["device"] == "cuda"
GPU = {"gpu": 1} if CUDA else {}
GPU_WRAP = f"bash {shlex.quote(GPU_SLOT)} " if CUDA else ""  # picks a free GPU on a workstation (no-op under SLURM)


def _warn_idle_gpus():
    """On a workstation, say when --resources gpu=N lets fewer GPU jobs run than the machine has GPUs."""
    if not CUDA or os.environ.get("SLURM_JOB_ID") or not workflow.local_exec:
        return
    allowed = workflow.global_resources.get("gpu")
    allowed = getattr(allowed, "value", allowed)
    try:
        listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return
    found = sum(line.startswith("GPU ") for line in listed.splitlines())
    if found > (allowed if isinstance(allowed, int) else 1):
        print(f"warning: this machine has {found} GPUs but --resources gpu={allowed if allowed is not None else 1} "
              f"lets only that many GPU jobs run at once; pass --resources gpu={found} (local/config.yaml sets gpu=1)",
              file=sys.stderr)


_warn_idle_gpus()
DOWNLOADABLE = tuple(n for n, c in registry.datasets().items() if c["obtain"] == "download")


wildcard_constraints:
    experiment=r"[A-Za-z][A-Za-z0-9_]*",
    dataset="|".join(registry.dataset_names()),
    model="|".join(registry.model_names()),
    width=r"[1-9]\d*",
    sparsity=r"0\.\d+",
    k=r"\d+",
    round=r"[1-9]\d*",
    group="|".join(GROUPS),
    table="|".join(TIDY),


# --------------------------------------------------------------------------- job lookups


def job(kind):
    """The plan row of the job whose directory (below results/) is the wildcard {job}."""

    def row(wc):
        path = f"{paths.RESULTS}/{wc.job}"
        try:
            return PLAN.jobs[kind][path]
        except KeyError:
            raise WorkflowError(f"{path} is not a {kind} job of this config; ask for a file the config plans "
                                "(python -m sparsebasin plan lists them)") from None

    return row


def settled(inputs, outputs):
    """A run job's inputs, ancient when every output of the job exists. The content key in each path says what
    a file holds, so a newer time stamp (a copied or restored tree, a touched checkpoint) is no reason to redo a
    finished run. A job with a missing output keeps plain inputs: Snakemake never schedules a job whose inputs
    from a rerunning job are all ancient and present, even when its own outputs are missing."""
    if all(os.path.exists(o) for o in outputs):
        return [ancient(f) for f in inputs]
    return list(inputs)


def inputs(kind):
    def fn(wc):
        row = job(kind)(wc)
        return settled(row.inputs, row.outputs)

    return fn


def run_outputs(**named):
    """A run job's declared outputs, flagged update: Snakemake never deletes them before the job runs, so a
    finished run that another workflow or an orphaned job wrote meanwhile is found finished by the step
    (which waits for the run's lock) instead of being deleted and trained again."""
    return {name: update(path) for name, path in named.items()}


def args(kind):
    return lambda wc: PLAN.args(job(kind)(wc))


def threads(kind):
    return lambda wc: PLAN.threads(job(kind)(wc))


# Params Snakemake never compares on a rerun. A param function of `threads` counts as derived for it (its
# changes show in the job's threads, which are no rerun trigger), so settings that never change which run
# a job makes go through these: progress lines, tracking, deterministic kernels, compilation, threads, the
# GPU slot wrapper (a path of this checkout). Toggling one on a finished workflow reruns nothing.


def run_only(text):
    return lambda wc, threads: text


def threads_each(kind):
    """Threads of each of the job's processes, from its (possibly scaled down) threads."""
    return lambda wc, threads: max(1, threads // PLAN.processes(job(kind)(wc)))


def gpu_launch(kind):
    """In front of a step on CUDA: gpu_slot.sh taking as many GPUs as the run has processes."""
    return lambda wc, threads: (f"SPARSEBASIN_GPUS_PER_JOB={PLAN.processes(job(kind)(wc))} {GPU_WRAP}"
                                if CUDA else "")


RUN_ONLY = run_only(PLAN.run_only_args())
EVAL_RUN_ONLY = run_only(PLAN.run_only_args(training=False))
TRACKER = run_only(PLAN.tracker_args())
GPU_ONLY = run_only(GPU_WRAP)


def launch(kind):
    """The step's launcher: one process, or torchrun with one per GPU (the rules put the GPU slot wrapper,
    which takes as many GPUs as the run has processes, in front: no path of this checkout in params)."""
    return lambda wc: PLAN.launcher(job(kind)(wc))


def gpus(kind):
    """resources: as many GPUs as the run has processes (device: cuda), none otherwise."""
    return {"gpu": lambda wc: PLAN.processes(job(kind)(wc))} if CUDA else {}


def runtime(kind):
    return lambda wc, attempt: PLAN.runtime(job(kind)(wc), attempt)


def mem_mb(kind):
    return lambda wc, attempt: PLAN.mem_mb(job(kind)(wc), attempt)


def light_mem(wc, attempt):
    return resources.light_mem(attempt)


def light_runtime(wc, attempt):
    return resources.light_runtime(attempt)


def job_log(wc):
    return paths.log_path(f"{paths.RESULTS}/{wc.job}")


def round_job(wc):
    """The imp_barrier row of one IMP round (the rule writes one file pair per round)."""
    return job("imp_barrier")(SimpleNamespace(job=f"{wc.job}/round{wc.round}"))


def ensemble_job(wc):
    path = paths.ensemble_path(wc.experiment, f"{wc.dataset}-{wc.model}", wc.width, wc.sparsity, wc.k, wc.group)
    if path not in PLAN.jobs["ensemble"]:
        raise WorkflowError(f"{path} is not an ensemble of this config (no diversity study at that setting)")
    return PLAN.jobs["ensemble"][path]


# --------------------------------------------------------------------------- experiments


def all_targets(wc):
    return [f for exp in EXPERIMENTS for f in reports.experiment_targets(PLAN, exp)]


def collect_inputs(wc):
    files = PLAN.tidy[wc.experiment][wc.table]
    if not files:
        raise WorkflowError(f"experiment {wc.experiment} produces nothing for the {wc.table} table "
                            f"(no cell has the study that fills it)")
    return files


def width_files(wc):
    return list(dict.fromkeys(PLAN.width_files.get((wc.experiment, f"{wc.dataset}-{wc.model}", int(wc.width)), [])))


# --------------------------------------------------------------------------- start and end of a run


def note_fused_extras():
    """Before any job runs: what fused jobs train beyond what this invocation needs (plan.hooks)."""
    if FUSED:
        jobs = list(workflow.dag.needrun_jobs())
        needed = {str(f) for j in jobs for f in j.input} | {str(f) for f in workflow.dag.targetfiles}
        for line in hooks.fused_extras(PLAN, {j.rule.name for j in jobs}, needed):
            print(line, file=sys.stderr)


def set_aside_stale():
    """After a successful run: what the config no longer asks for leaves the experiments' trees (plan.hooks)."""
    for line in hooks.set_aside_stale(PLAN):
        print(line, file=sys.stderr)


# --------------------------------------------------------------------------- data


def prepare_input(wc):
    return PLAN.data_stamp(wc.dataset).replace(".prepared.json", ".downloaded") if wc.dataset in DOWNLOADABLE else []


def data_dir_of(output):
    """The data directory, from a stamp path {data_dir}/.sparsebasin/<file>."""
    return os.path.dirname(os.path.dirname(str(output)))
