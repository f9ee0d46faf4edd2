# sparsebasin: from seeds to every figure and table of the paper.
#
#   snakemake --cores all                                   # built-in MNIST-1D demo (config.yaml)
#   snakemake --cores all --configfile config/all.yaml      # the whole paper
#   snakemake --profile local --configfile config/cifar10_resnet20.yaml
#
# See docs/workflow.md for the config structure, targets and profiles.

import os

# The built-in default applies only when no --configfile is given, so a paper
# config never inherits the demo experiment (Snakemake would deep-merge them).
if not workflow.overwrite_configfiles:

    configfile: os.path.join(workflow.basedir, "config.yaml")


# `snakemake --report report.html` opens on this page: each experiment's headline and scorecard,
# then its figures (the rule graph comes after them).
report: "workflow/report/workflow.rst"


# envs/sparsebasin.yaml installs this repository with `pip install -e ${SPARSEBASIN_ROOT}`
os.environ.setdefault("SPARSEBASIN_ROOT", workflow.basedir)


include: "workflow/rules/common.smk"  # validates the config first


include: "workflow/rules/data.smk"
include: "workflow/rules/dense.smk"
include: "workflow/rules/match.smk"
include: "workflow/rules/prune.smk"
include: "workflow/rules/sparse.smk"
include: "workflow/rules/fused.smk"
include: "workflow/rules/ensembles.smk"
include: "workflow/rules/lmc.smk"
include: "workflow/rules/figures.smk"


localrules:
    all,
    download,
    prepare,
    manifest,


rule all:
    input:
        all_targets,
    default_target: True


onstart:
    note_fused_extras()


# The end of a run names what it was for: each experiment's reproduction headline and where its
# summary, scorecard and report are; on failure, the failed job's log and its last lines
# (sparsebasin.finish; `make run` prints the same through workflow/scripts/follow.py). Outputs the
# config no longer asks for leave the experiments' trees first (plan.hooks).
onsuccess:
    from sparsebasin import finish

    set_aside_stale()
    finish.print_lines(finish.results_lines(config["experiments"], cwd=workflow.workdir_init), "Results")


onerror:
    from sparsebasin import finish

    finish.print_lines(finish.failure_lines(log, cwd=workflow.workdir_init), "What failed")


# SLURM profile support: copies the profile's `gpu_steps` resources (GPU
# partition and model) onto every rule that asks for a GPU. Must come last.
include: "slurm/gpu_steps.smk"
