# Matching: the permutation pi aligning A to B (activation matching by default).
#   match        trained A vs trained B                       .../seed{s}/match/perm.pt
#   match_early  trained A vs B at epoch e (Table 15)         .../seed{s}/early/e{e}/match/perm.pt
#   match_cross  trained A_s vs trained B_j (Table 1 groups)  .../seed{s}/cross/B{j}/match/perm.pt


rule match:
    input:
        data=data_input,
        a="results/{experiment}/{dataset}-{model}-w{width}/seed{seed}/dense/A/final.pt",
        b="results/{experiment}/{dataset}-{model}-w{width}/seed{seed}/dense/B/final.pt",
    output:
        perm="results/{experiment}/{dataset}-{model}-w{width}/seed{seed}/match/perm.pt",
        summary="results/{experiment}/{dataset}-{model}-w{width}/seed{seed}/match/perm.json",
    params:
        gpu=GPU_WRAP,
        args=match_params,
        tags=lambda wc: base_tags(wc, seed=wc.seed),
    log:
        "results/{experiment}/logs/{dataset}-{model}-w{width}/seed{seed}/match.log",
    benchmark:
        "results/{experiment}/benchmarks/{dataset}-{model}-w{width}/seed{seed}/match.tsv"
    threads: cell_threads
    resources:
        mem_mb=mem_mb,
        runtime=runtime(lambda cell, wc: 1),
        **GPU,
    conda:
        CONDA_ENV
    shell:
        "{params.gpu}python -m sparsebasin match --a {input.a:q} --b {input.b:q} {params.args} --threads {threads} {params.tags}"
        " --out {output.perm:q} --summary {output.summary:q} > {log:q} 2>&1"


rule match_early:
    input:
        data=data_input,
        a="results/{experiment}/{dataset}-{model}-w{width}/seed{seed}/dense/A/final.pt",
        b="results/{experiment}/{dataset}-{model}-w{width}/seed{seed}/dense/B/final.pt",
    output:
        perm="results/{experiment}/{dataset}-{model}-w{width}/seed{seed}/early/e{epoch}/match/perm.pt",
        summary="results/{experiment}/{dataset}-{model}-w{width}/seed{seed}/early/e{epoch}/match/perm.json",
    params:
        gpu=GPU_WRAP,
        a=early_a,
        b=early_b,
        args=match_params,
        tags=lambda wc: base_tags(wc, seed=wc.seed, match_epoch=wc.epoch),
    log:
        "results/{experiment}/logs/{dataset}-{model}-w{width}/seed{seed}/match_early_e{epoch}.log",
    benchmark:
        "results/{experiment}/benchmarks/{dataset}-{model}-w{width}/seed{seed}/match_early_e{epoch}.tsv"
    threads: cell_threads
    resources:
        mem_mb=mem_mb,
        runtime=runtime(lambda cell, wc: 1),
        **GPU,
    conda:
        CONDA_ENV
    shell:
        "{params.gpu}python -m sparsebasin match --a {params.a:q} --b {params.b:q} {params.args} --threads {threads} {params.tags}"
        " --out {output.perm:q} --summary {output.summary:q} > {log:q} 2>&1"


rule match_cross:
    input:
        data=data_input,
        a="results/{experiment}/{dataset}-{model}-w{width}/seed{seed}/dense/A/final.pt",
        b="results/{experiment}/{dataset}-{model}-w{width}/seed{other}/dense/B/final.pt",
    output:
        perm="results/{experiment}/{dataset}-{model}-w{width}/seed{seed}/cross/B{other}/match/perm.pt",
        summary="results/{experiment}/{dataset}-{model}-w{width}/seed{seed}/cross/B{other}/match/perm.json",
    params:
        gpu=GPU_WRAP,
        args=match_params,
        tags=lambda wc: base_tags(wc, seed=wc.seed, b_seed=wc.other),
    log:
        "results/{experiment}/logs/{dataset}-{model}-w{width}/seed{seed}/match_cross_B{other}.log",
    benchmark:
        "results/{experiment}/benchmarks/{dataset}-{model}-w{width}/seed{seed}/match_cross_B{other}.tsv"
    threads: cell_threads
    resources:
        mem_mb=mem_mb,
        runtime=runtime(lambda cell, wc: 1),
        **GPU,
    conda:
        CONDA_ENV
    shell:
        "{params.gpu}python -m sparsebasin match --a {input.a:q} --b {input.b:q} {params.args} --threads {threads} {params.tags}"
        " --out {output.perm:q} --summary {output.summary:q} > {log:q} 2>&1"
