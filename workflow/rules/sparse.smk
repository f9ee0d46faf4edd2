# Sparse runs from rewind point k, each dense.epochs - k epochs on a fresh schedule
# (sparsebasin.branches): lth = A's checkpoint at k + m_A; naive = B's + m_A;
# permuted = B's + pi(m_A); and the study variants: cross/B{j} (Table 1: naive and
# permuted on B_j), dataorder/d{j} (Table 1: lth with member j's data order),
# early/e{e} (Table 15: pi from B at epoch e). One rule; plan.table says which is
# which. The rewind checkpoint is a parameter; the job depends on the dense run's final.pt.
#
# With fused: true, fused.smk trains them instead: one job per sparse setting, width and k for
# every sparse run there (sweep, plane, diversity members, early matching), or per part of it
# that fits fused_memory_mb; the runs no fused job takes (fused_widths, unfusable models) stay here.

if not FUSED or PLAN.unfused("sparse"):

    rule sparse:
        input:
            inputs("sparse"),
        output:
            **run_outputs(
                final="results/{job}/final.pt",
                result="results/{job}/result.json",
                metrics="results/{job}/metrics.csv",
                predictions="results/{job}/predictions.pt",
            ),
        wildcard_constraints:
            job=paths.PATTERNS["sparse"],
        params:
            launch=launch("sparse"),
            args=args("sparse"),
            threads_each=threads_each("sparse"),
            run_only=RUN_ONLY,
            gpu=gpu_launch("sparse"),
            out_dir=lambda wc: f"results/{wc.job}",
        log:
            "results/logs/{job}/sparse.log",
        benchmark:
            "results/benchmarks/{job}/sparse.tsv"
        threads: threads("sparse")
        resources:
            mem_mb=mem_mb("sparse"),
            runtime=runtime("sparse"),
            **gpus("sparse"),
        conda:
            CONDA_ENV
        shell:
            "{params.gpu}{params.launch} sparse {params.args}{params.run_only} --threads {params.threads_each}"
            " --out-dir {params.out_dir:q} > {log:q} 2>&1"
