# Ensembles and diversity (Table 1): one job per group and width of a cell's
# diversity study, written into the experiment's own tree. The members are the
# study's seeds, the first one the anchor A1:
#   dense     A_j                                        (seed j's dense A)
#   imp       the IMP model of A_j at the sparsity       (seed j's prune S{S}/)
#   lth       A1 at k + m_A1, one data order per seed j  (sparse dataorder/d{j})
#   naive     B_j at k + m_A1                            (sparse cross/B{j})
#   permuted  B_j at k + pi_j(m_A1), pi_j: A1 -> B_j     (match and sparse cross/B{j})
# Member j = anchor is the anchor's own grid run.


rule ensemble:
    input:
        lambda wc: settled(ensemble_job(wc).inputs, ensemble_job(wc).outputs),
    output:
        "results/{experiment}/{dataset}-{model}-w{width}/ensembles/S{sparsity}/k{k}/{group}.json",
    params:
        args=lambda wc: PLAN.args(ensemble_job(wc)),
    log:
        "results/{experiment}/logs/{dataset}-{model}-w{width}/ensemble_S{sparsity}_k{k}_{group}.log",
    benchmark:
        "results/{experiment}/benchmarks/{dataset}-{model}-w{width}/ensemble_S{sparsity}_k{k}_{group}.tsv"
    threads: 1
    resources:
        mem_mb=light_mem,
        runtime=light_runtime,
    conda:
        CONDA_ENV
    shell:
        "python -m sparsebasin ensemble {params.args} --tag experiment={wildcards.experiment}"
        " --out {output:q} > {log:q} 2>&1"
