# Dense models A and B: trained once per experiment, cell, width and seed, and
# shared by every sparsity, rewind point and study of that cell.
#
# The rewind checkpoints dense/{net}/ckpt/epoch{k}.pt (every rewind point and
# early-matching epoch of the cell, common.save_epochs) are written by the same
# job but are not declared outputs: Snakemake deletes declared outputs before
# re-running a job, which would throw away checkpoints that a run resumed from
# its .resume.pt (after a kill or time-out) cannot write again. Jobs that read a
# checkpoint depend on final.pt and get the checkpoint path as a parameter.
# --save-epochs is a parameter, so changing the rewind points retrains.

#
# With fused: true, one job per cell and width trains all of them (dense_fused_*).

if not FUSED:

    rule dense:
        input:
            data=data_input,
        output:
            final="results/{experiment}/{dataset}-{model}-w{width}/seed{seed}/dense/{net}/final.pt",
            result="results/{experiment}/{dataset}-{model}-w{width}/seed{seed}/dense/{net}/result.json",
            metrics="results/{experiment}/{dataset}-{model}-w{width}/seed{seed}/dense/{net}/metrics.csv",
            predictions="results/{experiment}/{dataset}-{model}-w{width}/seed{seed}/dense/{net}/predictions.pt",
        params:
            gpu=GPU_WRAP,
            args=dense_params,
            out_dir=lambda wc, output: os.path.dirname(output.final),
        log:
            "results/{experiment}/logs/{dataset}-{model}-w{width}/seed{seed}/dense_{net}.log",
        benchmark:
            "results/{experiment}/benchmarks/{dataset}-{model}-w{width}/seed{seed}/dense_{net}.tsv"
        threads: cell_threads
        resources:
            mem_mb=mem_mb,
            runtime=runtime(lambda cell, wc: cell["T"]),
            **GPU,
        conda:
            CONDA_ENV
        shell:
            "{params.gpu}python -m sparsebasin train {params.args} --threads {threads} --out-dir {params.out_dir:q} > {log:q} 2>&1"

else:

    for _cell in CELLS:
        for _w in [w for w in _cell["widths"] if dense_group_runs(_cell, w)]:

            rule:
                name:
                    f"dense_fused_{_cell['experiment']}_{_cell['index']}_w{_w}"
                input:
                    data=data_stamp(_cell["dataset"]),
                output:
                    fused_dense_outputs(_cell, _w),
                params:
                    gpu=GPU_WRAP,
                    args=fused_dense_args(_cell, _w),
                log:
                    f"results/{_cell['experiment']}/logs/{_cell['name']}-w{_w}/dense_fused.log",
                benchmark:
                    f"results/{_cell['experiment']}/benchmarks/{_cell['name']}-w{_w}/dense_fused.tsv"
                threads: _cell.get("threads", THREADS)
                resources:
                    mem_mb=lambda wc, attempt, _c=_cell, _w=_w: train_mem(_c, _w, attempt),
                    runtime=lambda wc, attempt, _c=_cell, _w=_w: fused_minutes(
                        _c, _w, _c["T"], len(dense_group_runs(_c, _w)), attempt
                    ),
                    **GPU,
                conda:
                    CONDA_ENV
                shell:
                    "{params.gpu}python -m sparsebasin fused {params.args} --threads {threads} > {log:q} 2>&1"
