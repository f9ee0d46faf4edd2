# Pruning: IMP-FT of the trained A, one chained job per prune directory writing
# every target S{s}/{mask.pt, sparsity.json, model.pt, result.json, predictions.pt}
# (the union of the targets of every study and experiment using it). Snakemake
# outputs cannot depend on wildcard values, so each distinct target set gets its
# own rule, prune_<i>, limited to its directories. The per-round files
# (rounds/round{r}.pt, rounds.json) are not declared outputs, so a re-run after a
# kill resumes from the finished rounds (as in dense.smk); jobs that read a round
# depend on a target file of the chain.
#
# The permuted masks pi(m_A) have no job of their own: the sparse (or fused)
# job of a permuted run applies match's perm.pt to this mask.pt in memory.

for _i, (_targets, _dirs) in enumerate(PLAN.prune_target_sets().items()):

    rule:
        name:
            f"prune_{_i}"
        input:
            inputs("prune"),
        output:
            [update(f"results/{{job}}/S{fmt_sparsity(t)}/{f}") for t in _targets for f in PRUNE_TARGET_FILES],
        wildcard_constraints:
            job="|".join(re.escape(d[len("results/"):]) for d in _dirs),
        params:
            launch=launch("prune"),
            args=args("prune"),
            threads_each=threads_each("prune"),
            run_only=RUN_ONLY,
            gpu=gpu_launch("prune"),
            out_dir=lambda wc: f"results/{wc.job}",
        log:
            "results/logs/{job}/prune.log",
        benchmark:
            "results/benchmarks/{job}/prune.tsv"
        threads: threads("prune")
        resources:
            mem_mb=mem_mb("prune"),
            runtime=runtime("prune"),
            **gpus("prune"),
        conda:
            CONDA_ENV
        shell:
            "{params.gpu}{params.launch} prune {params.args}{params.run_only} --threads {params.threads_each}"
            " --out-dir {params.out_dir:q} > {log:q} 2>&1"
