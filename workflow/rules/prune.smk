# Pruning: IMP-FT of the trained A, one chained job per (cell, width, seed)
# writing every target S{s}/{mask.pt, sparsity.json, model.pt, result.json,
# predictions.pt}. The target set differs from cell to cell and Snakemake
# outputs cannot depend on wildcard values, so each cell has its own prune rule,
# prune_<experiment>_<cell index>. The per-round files (rounds/round{r}.pt,
# rounds.json) are not declared outputs, so a re-run after a kill resumes from
# the finished rounds instead of starting over (as in dense.smk); jobs that read
# a round depend on a target file of the chain.
#
# Then the permuted masks pi(m_A): permute_mask (pi from match) and its
# early-matching and cross-seed variants.

for _cell in CELLS:

    rule:
        name:
            f"prune_{_cell['experiment']}_{_cell['index']}"
        input:
            data=data_stamp(_cell["dataset"]),
            a=f"results/{_cell['experiment']}/{_cell['name']}-w{{width}}/seed{{seed}}/dense/A/final.pt",
        output:
            prune_outputs(_cell),
        wildcard_constraints:
            width="|".join(str(w) for w in _cell["widths"]),
        params:
            gpu=GPU_WRAP,
            args=prune_params(_cell),
            seed=lambda wc: dense_seed(wc.seed, "A"),
            tags=prune_tags(_cell),
            out_dir=lambda wc, input: f"{os.path.dirname(os.path.dirname(os.path.dirname(input.a)))}/prune",
        log:
            f"results/{_cell['experiment']}/logs/{_cell['name']}-w{{width}}/seed{{seed}}/prune.log",
        benchmark:
            f"results/{_cell['experiment']}/benchmarks/{_cell['name']}-w{{width}}/seed{{seed}}/prune.tsv"
        threads: _cell.get("threads", THREADS)
        resources:
            mem_mb=lambda wc, attempt, _c=_cell: train_mem(_c, wc.width, attempt),
            runtime=lambda wc, attempt, _c=_cell: train_minutes(_c, wc.width, prune_epochs(_c), attempt),
            **GPU,
        conda:
            CONDA_ENV
        shell:
            "{params.gpu}python -m sparsebasin prune --checkpoint {input.a:q} {params.args} --threads {threads} --seed {params.seed}"
            " {params.tags} --out-dir {params.out_dir:q} > {log:q} 2>&1"


rule permute_mask:
    input:
        mask="results/{experiment}/{dataset}-{model}-w{width}/seed{seed}/prune/S{sparsity}/mask.pt",
        perm="results/{experiment}/{dataset}-{model}-w{width}/seed{seed}/match/perm.pt",
    output:
        "results/{experiment}/{dataset}-{model}-w{width}/seed{seed}/prune/S{sparsity}/mask_permuted.pt",
    log:
        "results/{experiment}/logs/{dataset}-{model}-w{width}/seed{seed}/permute_S{sparsity}.log",
    benchmark:
        "results/{experiment}/benchmarks/{dataset}-{model}-w{width}/seed{seed}/permute_S{sparsity}.tsv"
    threads: 1
    resources:
        mem_mb=light_mem,
        runtime=light_runtime,
    conda:
        CONDA_ENV
    shell:
        "python -m sparsebasin permute --permutation {input.perm:q} --input {input.mask:q} --out {output:q} > {log:q} 2>&1"


rule permute_mask_early:
    input:
        mask="results/{experiment}/{dataset}-{model}-w{width}/seed{seed}/prune/S{sparsity}/mask.pt",
        perm="results/{experiment}/{dataset}-{model}-w{width}/seed{seed}/early/e{epoch}/match/perm.pt",
    output:
        "results/{experiment}/{dataset}-{model}-w{width}/seed{seed}/early/e{epoch}/prune/S{sparsity}/mask_permuted.pt",
    log:
        "results/{experiment}/logs/{dataset}-{model}-w{width}/seed{seed}/permute_early_e{epoch}_S{sparsity}.log",
    benchmark:
        "results/{experiment}/benchmarks/{dataset}-{model}-w{width}/seed{seed}/permute_early_e{epoch}_S{sparsity}.tsv"
    threads: 1
    resources:
        mem_mb=light_mem,
        runtime=light_runtime,
    conda:
        CONDA_ENV
    shell:
        "python -m sparsebasin permute --permutation {input.perm:q} --input {input.mask:q} --out {output:q} > {log:q} 2>&1"


rule permute_mask_cross:
    input:
        mask="results/{experiment}/{dataset}-{model}-w{width}/seed{seed}/prune/S{sparsity}/mask.pt",
        perm="results/{experiment}/{dataset}-{model}-w{width}/seed{seed}/cross/B{other}/match/perm.pt",
    output:
        "results/{experiment}/{dataset}-{model}-w{width}/seed{seed}/cross/B{other}/prune/S{sparsity}/mask_permuted.pt",
    log:
        "results/{experiment}/logs/{dataset}-{model}-w{width}/seed{seed}/permute_cross_B{other}_S{sparsity}.log",
    benchmark:
        "results/{experiment}/benchmarks/{dataset}-{model}-w{width}/seed{seed}/permute_cross_B{other}_S{sparsity}.tsv"
    threads: 1
    resources:
        mem_mb=light_mem,
        runtime=light_runtime,
    conda:
        CONDA_ENV
    shell:
        "python -m sparsebasin permute --permutation {input.perm:q} --input {input.mask:q} --out {output:q} > {log:q} 2>&1"
