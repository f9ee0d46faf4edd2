# Loss landscapes (one rule each):
#   lmc          (1-a) pi(A) + a B per width and seed (Fig 3)       lmc-{key}/{curve.csv,barriers.json}
#   imp_barrier  dense A vs the IMP model of each round (Fig 4a)    impb-{key}/round{r}.{csv,json}
#   plane        plane through A, LTH and pi^-1(permuted) (Fig 4b)  plane-{key}/S{S}/k{k}/plane.csv


rule lmc:
    input:
        inputs("lmc"),
    output:
        **run_outputs(curve="results/{job}/curve.csv", barriers="results/{job}/barriers.json"),
    wildcard_constraints:
        job=paths.PATTERNS["lmc"],
    params:
        run_only=EVAL_RUN_ONLY,
        gpu=GPU_ONLY,
        args=args("lmc"),
    log:
        "results/logs/{job}/lmc.log",
    benchmark:
        "results/benchmarks/{job}/lmc.tsv"
    threads: threads("lmc")
    resources:
        mem_mb=mem_mb("lmc"),
        runtime=runtime("lmc"),
        **GPU,
    conda:
        CONDA_ENV
    shell:
        "{params.gpu}python -m sparsebasin interpolate {params.args}{params.run_only} --threads {threads}"
        " --out {output.curve:q} --barriers {output.barriers:q} > {log:q} 2>&1"


rule imp_barrier:
    input:
        lambda wc: settled(round_job(wc).inputs, round_job(wc).outputs),
    output:
        **run_outputs(curve="results/{job}/round{round}.csv", barriers="results/{job}/round{round}.json"),
    wildcard_constraints:
        job=paths.PATTERNS["imp_barrier"],
    params:
        run_only=EVAL_RUN_ONLY,
        gpu=GPU_ONLY,
        args=lambda wc: PLAN.args(round_job(wc)),
    log:
        "results/logs/{job}/round{round}.log",
    benchmark:
        "results/benchmarks/{job}/round{round}.tsv"
    threads: lambda wc: PLAN.threads(round_job(wc))
    resources:
        mem_mb=lambda wc, attempt: PLAN.mem_mb(round_job(wc), attempt),
        runtime=lambda wc, attempt: PLAN.runtime(round_job(wc), attempt),
        **GPU,
    conda:
        CONDA_ENV
    shell:
        "{params.gpu}python -m sparsebasin interpolate {params.args}{params.run_only} --threads {threads}"
        " --out {output.curve:q} --barriers {output.barriers:q} > {log:q} 2>&1"


rule plane:
    input:
        inputs("plane"),
    output:
        **run_outputs(plane="results/{job}/plane.csv"),
    wildcard_constraints:
        job=paths.PATTERNS["plane"],
    params:
        run_only=EVAL_RUN_ONLY,
        gpu=GPU_ONLY,
        args=args("plane"),
    log:
        "results/logs/{job}/plane.log",
    benchmark:
        "results/benchmarks/{job}/plane.tsv"
    threads: threads("plane")
    resources:
        mem_mb=mem_mb("plane"),
        runtime=runtime("plane"),
        **GPU,
    conda:
        CONDA_ENV
    shell:
        "{params.gpu}python -m sparsebasin plane {params.args}{params.run_only} --threads {threads}"
        " --out {output.plane:q} > {log:q} 2>&1"
