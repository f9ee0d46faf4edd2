# Dense models A and B (plan.table: one row per dense setting, width, seed and
# net, shared by every study and experiment that asks for it).
#
# The rewind checkpoints {job}/ckpt/epoch{k}.pt (the union of what every user
# needs) are written by the same job but are not declared outputs: Snakemake
# deletes declared outputs before re-running a job, which would throw away
# checkpoints that a run resumed from its .resume.pt cannot write again. Jobs that
# read a checkpoint depend on final.pt and get the checkpoint path as a parameter.
#
# With fused: true, fused.smk trains them instead: one job per dense setting and width (or
# per part of it that fits fused_memory_mb); the runs no fused job takes stay here.

if not FUSED or PLAN.unfused("dense"):

    rule dense:
        input:
            inputs("dense"),
        output:
            **run_outputs(
                final="results/{job}/final.pt",
                result="results/{job}/result.json",
                metrics="results/{job}/metrics.csv",
                predictions="results/{job}/predictions.pt",
            ),
        wildcard_constraints:
            job=paths.PATTERNS["dense"],
        params:
            launch=launch("dense"),
            args=args("dense"),
            threads_each=threads_each("dense"),
            run_only=RUN_ONLY,
            gpu=gpu_launch("dense"),
            out_dir=lambda wc: f"results/{wc.job}",
        log:
            "results/logs/{job}/train.log",
        benchmark:
            "results/benchmarks/{job}/train.tsv"
        threads: threads("dense")
        resources:
            mem_mb=mem_mb("dense"),
            runtime=runtime("dense"),
            **gpus("dense"),
        conda:
            CONDA_ENV
        shell:
            "{params.gpu}{params.launch} train {params.args}{params.run_only} --threads {params.threads_each}"
            " --out-dir {params.out_dir:q} > {log:q} 2>&1"
