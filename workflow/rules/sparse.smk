# Sparse runs from rewind point k, each dense.epochs - k epochs on a fresh schedule:
#   lth      = A's checkpoint at k + m_A
#   naive    = B's checkpoint at k + m_A
#   permuted = B's checkpoint at k + pi(m_A)
# sparse            the grid                               .../seed{s}/sparse/S{S}/k{k}/{branch}/
# sparse_early      permuted, pi from B at epoch e         .../seed{s}/early/e{e}/sparse/S{S}/k{k}/permuted/
# sparse_cross      naive/permuted on seed j's B, m_{A_s}  .../seed{s}/cross/B{j}/sparse/S{S}/k{k}/{naive,permuted}/
# sparse_dataorder  lth of seed s, member j's data order   .../seed{s}/dataorder/d{j}/sparse/S{S}/k{k}/lth/
# (the last two are Table 1 diversity members, see common.member_dir)

#
# With fused: true, one job per cell, width and rewind point k trains every one
# of these runs at that k (sparse_fused_*): same run directories, same tags.

if not FUSED:

    rule sparse:
        input:
            data=data_input,
            run=sparse_run_input,
            mask=sparse_mask_input,
        output:
            final="results/{experiment}/{dataset}-{model}-w{width}/seed{seed}/sparse/S{sparsity}/k{k}/{branch}/final.pt",
            result="results/{experiment}/{dataset}-{model}-w{width}/seed{seed}/sparse/S{sparsity}/k{k}/{branch}/result.json",
            metrics="results/{experiment}/{dataset}-{model}-w{width}/seed{seed}/sparse/S{sparsity}/k{k}/{branch}/metrics.csv",
            predictions="results/{experiment}/{dataset}-{model}-w{width}/seed{seed}/sparse/S{sparsity}/k{k}/{branch}/predictions.pt",
        params:
            gpu=GPU_WRAP,
            init=lambda wc: ckpt_path(wc, wc.seed, "A" if wc.branch == "lth" else "B"),
            branch=lambda wc: wc.branch,
            args=lambda wc: sparse_args(wc, wc.seed),
            tags=sparse_tags,
            out_dir=lambda wc, output: os.path.dirname(output.final),
        log:
            "results/{experiment}/logs/{dataset}-{model}-w{width}/seed{seed}/sparse_S{sparsity}_k{k}_{branch}.log",
        benchmark:
            "results/{experiment}/benchmarks/{dataset}-{model}-w{width}/seed{seed}/sparse_S{sparsity}_k{k}_{branch}.tsv"
        threads: cell_threads
        resources:
            mem_mb=mem_mb,
            runtime=runtime(sparse_epochs),
            **GPU,
        conda:
            CONDA_ENV
        shell:
            "{params.gpu}python -m sparsebasin sparse --init {params.init:q} --mask {input.mask:q} --branch {params.branch}"
            " {params.args} --threads {threads} {params.tags} --out-dir {params.out_dir:q} > {log:q} 2>&1"


    rule sparse_early:
        input:
            data=data_input,
            run="results/{experiment}/{dataset}-{model}-w{width}/seed{seed}/dense/B/final.pt",
            mask="results/{experiment}/{dataset}-{model}-w{width}/seed{seed}/early/e{epoch}/prune/S{sparsity}/mask_permuted.pt",
        output:
            final="results/{experiment}/{dataset}-{model}-w{width}/seed{seed}/early/e{epoch}/sparse/S{sparsity}/k{k}/permuted/final.pt",
            result="results/{experiment}/{dataset}-{model}-w{width}/seed{seed}/early/e{epoch}/sparse/S{sparsity}/k{k}/permuted/result.json",
            metrics="results/{experiment}/{dataset}-{model}-w{width}/seed{seed}/early/e{epoch}/sparse/S{sparsity}/k{k}/permuted/metrics.csv",
            predictions="results/{experiment}/{dataset}-{model}-w{width}/seed{seed}/early/e{epoch}/sparse/S{sparsity}/k{k}/permuted/predictions.pt",
        params:
            gpu=GPU_WRAP,
            init=lambda wc: ckpt_path(wc, wc.seed, "B"),
            branch="permuted",
            args=lambda wc: sparse_args(wc, wc.seed),
            tags=lambda wc: base_tags(wc, seed=wc.seed, sparsity=wc.sparsity, k=wc.k, branch="permuted", match_epoch=wc.epoch),
            out_dir=lambda wc, output: os.path.dirname(output.final),
        log:
            "results/{experiment}/logs/{dataset}-{model}-w{width}/seed{seed}/sparse_early_e{epoch}_S{sparsity}_k{k}.log",
        benchmark:
            "results/{experiment}/benchmarks/{dataset}-{model}-w{width}/seed{seed}/sparse_early_e{epoch}_S{sparsity}_k{k}.tsv"
        threads: cell_threads
        resources:
            mem_mb=mem_mb,
            runtime=runtime(sparse_epochs),
            **GPU,
        conda:
            CONDA_ENV
        shell:
            "{params.gpu}python -m sparsebasin sparse --init {params.init:q} --mask {input.mask:q} --branch {params.branch}"
            " {params.args} --threads {threads} {params.tags} --out-dir {params.out_dir:q} > {log:q} 2>&1"


    rule sparse_cross:
        input:
            data=data_input,
            run="results/{experiment}/{dataset}-{model}-w{width}/seed{other}/dense/B/final.pt",
            mask=cross_mask_input,
        output:
            final="results/{experiment}/{dataset}-{model}-w{width}/seed{seed}/cross/B{other}/sparse/S{sparsity}/k{k}/{xbranch}/final.pt",
            result="results/{experiment}/{dataset}-{model}-w{width}/seed{seed}/cross/B{other}/sparse/S{sparsity}/k{k}/{xbranch}/result.json",
            metrics="results/{experiment}/{dataset}-{model}-w{width}/seed{seed}/cross/B{other}/sparse/S{sparsity}/k{k}/{xbranch}/metrics.csv",
            predictions="results/{experiment}/{dataset}-{model}-w{width}/seed{seed}/cross/B{other}/sparse/S{sparsity}/k{k}/{xbranch}/predictions.pt",
        params:
            gpu=GPU_WRAP,
            init=lambda wc: ckpt_path(wc, wc.other, "B"),
            branch=lambda wc: wc.xbranch,
            args=lambda wc: sparse_args(wc, wc.other),
            tags=lambda wc: base_tags(wc, seed=wc.seed, sparsity=wc.sparsity, k=wc.k, branch=wc.xbranch, member=wc.other),
            out_dir=lambda wc, output: os.path.dirname(output.final),
        log:
            "results/{experiment}/logs/{dataset}-{model}-w{width}/seed{seed}/sparse_cross_B{other}_S{sparsity}_k{k}_{xbranch}.log",
        benchmark:
            "results/{experiment}/benchmarks/{dataset}-{model}-w{width}/seed{seed}/sparse_cross_B{other}_S{sparsity}_k{k}_{xbranch}.tsv"
        threads: cell_threads
        resources:
            mem_mb=mem_mb,
            runtime=runtime(sparse_epochs),
            **GPU,
        conda:
            CONDA_ENV
        shell:
            "{params.gpu}python -m sparsebasin sparse --init {params.init:q} --mask {input.mask:q} --branch {params.branch}"
            " {params.args} --threads {threads} {params.tags} --out-dir {params.out_dir:q} > {log:q} 2>&1"


    rule sparse_dataorder:
        input:
            data=data_input,
            run="results/{experiment}/{dataset}-{model}-w{width}/seed{seed}/dense/A/final.pt",
            mask="results/{experiment}/{dataset}-{model}-w{width}/seed{seed}/prune/S{sparsity}/mask.pt",
        output:
            final="results/{experiment}/{dataset}-{model}-w{width}/seed{seed}/dataorder/d{other}/sparse/S{sparsity}/k{k}/lth/final.pt",
            result="results/{experiment}/{dataset}-{model}-w{width}/seed{seed}/dataorder/d{other}/sparse/S{sparsity}/k{k}/lth/result.json",
            metrics="results/{experiment}/{dataset}-{model}-w{width}/seed{seed}/dataorder/d{other}/sparse/S{sparsity}/k{k}/lth/metrics.csv",
            predictions="results/{experiment}/{dataset}-{model}-w{width}/seed{seed}/dataorder/d{other}/sparse/S{sparsity}/k{k}/lth/predictions.pt",
        params:
            gpu=GPU_WRAP,
            init=lambda wc: ckpt_path(wc, wc.seed, "A"),
            branch="lth",
            args=lambda wc: sparse_args(wc, wc.other),
            tags=lambda wc: base_tags(wc, seed=wc.seed, sparsity=wc.sparsity, k=wc.k, branch="lth", member=wc.other),
            out_dir=lambda wc, output: os.path.dirname(output.final),
        log:
            "results/{experiment}/logs/{dataset}-{model}-w{width}/seed{seed}/sparse_dataorder_d{other}_S{sparsity}_k{k}.log",
        benchmark:
            "results/{experiment}/benchmarks/{dataset}-{model}-w{width}/seed{seed}/sparse_dataorder_d{other}_S{sparsity}_k{k}.tsv"
        threads: cell_threads
        resources:
            mem_mb=mem_mb,
            runtime=runtime(sparse_epochs),
            **GPU,
        conda:
            CONDA_ENV
        shell:
            "{params.gpu}python -m sparsebasin sparse --init {params.init:q} --mask {input.mask:q} --branch {params.branch}"
            " {params.args} --threads {threads} {params.tags} --out-dir {params.out_dir:q} > {log:q} 2>&1"

else:

    for _cell in CELLS:
        for _w, _k in sparse_groups(_cell):

            rule:
                name:
                    f"sparse_fused_{_cell['experiment']}_{_cell['index']}_w{_w}_k{_k}"
                input:
                    data=data_stamp(_cell["dataset"]),
                    runs=fused_sparse_inputs(_cell, _w, _k),
                output:
                    fused_sparse_outputs(_cell, _w, _k),
                params:
                    gpu=GPU_WRAP,
                    args=fused_sparse_args(_cell, _w, _k),
                log:
                    f"results/{_cell['experiment']}/logs/{_cell['name']}-w{_w}/sparse_fused_k{_k}.log",
                benchmark:
                    f"results/{_cell['experiment']}/benchmarks/{_cell['name']}-w{_w}/sparse_fused_k{_k}.tsv"
                threads: _cell.get("threads", THREADS)
                resources:
                    mem_mb=lambda wc, attempt, _c=_cell, _w=_w: train_mem(_c, _w, attempt),
                    runtime=lambda wc, attempt, _c=_cell, _w=_w, _k=_k: fused_minutes(
                        _c, _w, _c["T"] - _k, len(group_runs(_c, _w, _k)), attempt
                    ),
                    **GPU,
                conda:
                    CONDA_ENV
                shell:
                    "{params.gpu}python -m sparsebasin fused {params.args} --threads {threads} > {log:q} 2>&1"
