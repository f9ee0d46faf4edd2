# Fused training (fused: true): the dense and sparse rows of the run table grouped
# so one process trains a group as one stacked model (sparsebasin.training.fused):
# every dense run of one dense setting and width, every sparse run of one sparse
# setting, width and rewind point k, split into parts when fused_memory_mb (the
# device memory a job may use) fits fewer runs. Each part is one rule (Snakemake
# outputs cannot depend on wildcards); its outputs are exactly its rows' outputs.
# Rows no fused job takes (fused_widths, unfusable models, a group of one) go
# to the plain dense/sparse rule; ruleorder gives the fused rule its own rows.

if FUSED:

    _plain = {kind: PLAN.unfused(kind) for kind in ("dense", "sparse")}

    for _fj in PLAN.fused_jobs():
        if _plain[_fj.jobs[0].kind]:
            workflow.ruleorder(_fj.name, _fj.jobs[0].kind)

        rule:
            name:
                _fj.name
            input:
                lambda wc, _j=_fj: settled(_j.inputs, _j.outputs),
            output:
                [update(f) for f in _fj.outputs],
            params:
                args=_fj.args,
                run_only=RUN_ONLY,
                gpu=GPU_ONLY,
            log:
                _fj.log,
            benchmark:
                _fj.benchmark
            threads: PLAN.threads(_fj.jobs[0])
            resources:
                mem_mb=lambda wc, attempt, _j=_fj: PLAN.mem_mb(_j.jobs[0], attempt, len(_j.jobs)),
                runtime=lambda wc, attempt, _j=_fj: PLAN.runtime(
                    _j.jobs[0], attempt, PLAN.fused_epochs(_j.jobs)
                ),
                **GPU,
            conda:
                CONDA_ENV
            shell:
                "{params.gpu}python -m sparsebasin fused {params.args}{params.run_only} --threads {threads} > {log:q} 2>&1"
