# Matching: the permutation pi aligning A to B (activation matching by default), one rule:
#   match-{key}/            trained A vs trained B
#   match-{key}/early/e{e}/ trained A vs B at epoch e (Table 15)
#   match-{key}/cross/B{j}/ trained A_s vs trained B_j (Table 1 groups)


rule match:
    input:
        inputs("match"),
    output:
        **run_outputs(perm="results/{job}/perm.pt", summary="results/{job}/perm.json"),
    wildcard_constraints:
        job=paths.PATTERNS["match"],
    params:
        run_only=EVAL_RUN_ONLY,
        gpu=GPU_ONLY,
        args=args("match"),
    log:
        "results/logs/{job}/match.log",
    benchmark:
        "results/benchmarks/{job}/match.tsv"
    threads: threads("match")
    resources:
        mem_mb=mem_mb("match"),
        runtime=runtime("match"),
        **GPU,
    conda:
        CONDA_ENV
    shell:
        "{params.gpu}python -m sparsebasin match {params.args}{params.run_only} --threads {threads}"
        " --out {output.perm:q} --summary {output.summary:q} > {log:q} 2>&1"
