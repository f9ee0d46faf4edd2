# Loss landscapes:
#   lmc          (1-a) pi(A) + a B per width and seed (Fig 3)       .../seed{s}/lmc/{curve.csv,barriers.json}
#   imp_barrier  dense A vs the IMP model of each round (Fig 4a)    .../seed{s}/imp_barrier/round{r}.{csv,json}
#   plane        plane through A, LTH and pi^-1(permuted) (Fig 4b)  .../seed{s}/plane/S{S}/k{k}/plane.csv


rule lmc:
    input:
        data=data_input,
        a="results/{experiment}/{dataset}-{model}-w{width}/seed{seed}/dense/A/final.pt",
        b="results/{experiment}/{dataset}-{model}-w{width}/seed{seed}/dense/B/final.pt",
        perm="results/{experiment}/{dataset}-{model}-w{width}/seed{seed}/match/perm.pt",
    output:
        curve="results/{experiment}/{dataset}-{model}-w{width}/seed{seed}/lmc/curve.csv",
        barriers="results/{experiment}/{dataset}-{model}-w{width}/seed{seed}/lmc/barriers.json",
    params:
        gpu=GPU_WRAP,
        args=interp_args("lmc"),
        tags=lambda wc: base_tags(wc, seed=wc.seed),
    log:
        "results/{experiment}/logs/{dataset}-{model}-w{width}/seed{seed}/lmc.log",
    benchmark:
        "results/{experiment}/benchmarks/{dataset}-{model}-w{width}/seed{seed}/lmc.tsv"
    threads: cell_threads
    resources:
        mem_mb=mem_mb,
        runtime=runtime(interp_epochs("lmc")),
        **GPU,
    conda:
        CONDA_ENV
    shell:
        "{params.gpu}python -m sparsebasin interpolate --a {input.a:q} --b {input.b:q} --permutation {input.perm:q}"
        " {params.args} --threads {threads} {params.tags} --out {output.curve:q} --barriers {output.barriers:q} > {log:q} 2>&1"


rule imp_barrier:
    input:
        data=data_input,
        a="results/{experiment}/{dataset}-{model}-w{width}/seed{seed}/dense/A/final.pt",
        chain=imp_chain_input,
    output:
        curve="results/{experiment}/{dataset}-{model}-w{width}/seed{seed}/imp_barrier/round{round}.csv",
        barriers="results/{experiment}/{dataset}-{model}-w{width}/seed{seed}/imp_barrier/round{round}.json",
    params:
        gpu=GPU_WRAP,
        b=imp_round_file,
        args=interp_args("imp_barrier"),
        tags=imp_tags,
    log:
        "results/{experiment}/logs/{dataset}-{model}-w{width}/seed{seed}/imp_barrier_round{round}.log",
    benchmark:
        "results/{experiment}/benchmarks/{dataset}-{model}-w{width}/seed{seed}/imp_barrier_round{round}.tsv"
    threads: cell_threads
    resources:
        mem_mb=mem_mb,
        runtime=runtime(interp_epochs("imp_barrier")),
        **GPU,
    conda:
        CONDA_ENV
    shell:
        "{params.gpu}python -m sparsebasin interpolate --a {input.a:q} --b {params.b:q}"
        " {params.args} --threads {threads} {params.tags} --out {output.curve:q} --barriers {output.barriers:q} > {log:q} 2>&1"


rule plane:
    input:
        data=data_input,
        origin="results/{experiment}/{dataset}-{model}-w{width}/seed{seed}/dense/A/final.pt",
        lth="results/{experiment}/{dataset}-{model}-w{width}/seed{seed}/sparse/S{sparsity}/k{k}/lth/final.pt",
        permuted="results/{experiment}/{dataset}-{model}-w{width}/seed{seed}/sparse/S{sparsity}/k{k}/permuted/final.pt",
        perm="results/{experiment}/{dataset}-{model}-w{width}/seed{seed}/match/perm.pt",
    output:
        "results/{experiment}/{dataset}-{model}-w{width}/seed{seed}/plane/S{sparsity}/k{k}/plane.csv",
    params:
        gpu=GPU_WRAP,
        args=plane_args,
        tags=lambda wc: base_tags(wc, seed=wc.seed, sparsity=wc.sparsity, k=wc.k),
    log:
        "results/{experiment}/logs/{dataset}-{model}-w{width}/seed{seed}/plane_S{sparsity}_k{k}.log",
    benchmark:
        "results/{experiment}/benchmarks/{dataset}-{model}-w{width}/seed{seed}/plane_S{sparsity}_k{k}.tsv"
    threads: cell_threads
    resources:
        mem_mb=mem_mb,
        runtime=runtime(plane_epochs),
        **GPU,
    conda:
        CONDA_ENV
    shell:
        "{params.gpu}python -m sparsebasin plane --origin {input.origin:q} --p1 {input.lth:q} --p2 {input.permuted:q}"
        " --p2-permutation {input.perm:q} --inverse {params.args} --threads {threads} {params.tags} --out {output:q} > {log:q} 2>&1"
