# Collect -> figures, tables, summary (per experiment), and the per-width manifest.
#   results/{experiment}/tidy/{table}.csv         tidy tables (collect)
#   results/{experiment}/figures/{name}.{pdf,png}  one rule per figure (figure_<name>)
#   results/{experiment}/tables/{kind}.{csv,md}    one rule per table (table_<kind>)
#   results/{experiment}/tables/scorecard.{csv,md,json}  every cell against the paper (scorecard)
#   results/{experiment}/summary.md                 opens with the scorecard's headline
#   results/{experiment}/{dataset}-{model}-w{width}/manifest.txt   every result of one width
# Captions: workflow/report/<kind>.rst (snakemake --report report.html; its subcategories are
# numbered so the scorecard and summary come first).


rule collect:
    input:
        collect_inputs,
    output:
        "results/{experiment}/tidy/{table}.csv",
    log:
        "results/{experiment}/logs/collect_{table}.log",
    benchmark:
        "results/{experiment}/benchmarks/collect_{table}.tsv"
    threads: 1
    resources:
        mem_mb=light_mem,
        runtime=light_runtime,
    conda:
        CONDA_ENV
    shell:
        "python -m sparsebasin collect --inputs {input:q} --tag experiment={wildcards.experiment}"
        " --out {output:q} > {log:q} 2>&1"


for _name, (_kind, _metric, _sec, _table) in reports.FIGURES.items():

    rule:
        name:
            f"figure_{_name}"
        input:
            unpack(lambda wc, _k=_kind, _t=_table: reports.report_inputs(PLAN, wc.experiment, _k, _t)),
        output:
            pdf=report(
                f"results/{{experiment}}/figures/{_name}.pdf",
                caption=f"../report/{_kind}.rst",
                category="{experiment}",
                subcategory="2. figures",
            ),
            png=report(
                f"results/{{experiment}}/figures/{_name}.png",
                caption=f"../report/{_kind}.rst",
                category="{experiment}",
                subcategory="2. figures",
            ),
        params:
            kind=_kind,
            extra=lambda wc, _k=_kind, _m=_metric: reports.figure_extra(PLAN, wc.experiment, _k, _m),
        log:
            f"results/{{experiment}}/logs/figure_{_name}.log",
        benchmark:
            f"results/{{experiment}}/benchmarks/figure_{_name}.tsv"
        threads: 1
        resources:
            mem_mb=light_mem,
            runtime=light_runtime,
        conda:
            CONDA_ENV
        shell:
            "python -m sparsebasin figure --kind {params.kind} --table {input.table:q}{params.extra}"
            " --out {output.pdf:q} --png {output.png:q} > {log:q} 2>&1"


for _kind, (_table, _sec) in reports.TABLES.items():

    rule:
        name:
            f"table_{_kind}"
        input:
            unpack(lambda wc, _k=_kind, _t=_table: reports.report_inputs(PLAN, wc.experiment, _k, _t)),
        output:
            csv=report(
                f"results/{{experiment}}/tables/{_kind}.csv",
                caption=f"../report/{_kind}.rst",
                category="{experiment}",
                subcategory="3. tables",
            ),
            md=report(
                f"results/{{experiment}}/tables/{_kind}.md",
                caption=f"../report/{_kind}.rst",
                category="{experiment}",
                subcategory="3. tables",
            ),
        params:
            kind=_kind,
            extra=lambda wc, _k=_kind: reports.table_extra(PLAN, wc.experiment, _k),
        log:
            f"results/{{experiment}}/logs/table_{_kind}.log",
        benchmark:
            f"results/{{experiment}}/benchmarks/table_{_kind}.tsv"
        threads: 1
        resources:
            mem_mb=light_mem,
            runtime=light_runtime,
        conda:
            CONDA_ENV
        shell:
            "python -m sparsebasin table --kind {params.kind} --table {input.table:q}{params.extra}"
            " --out-csv {output.csv:q} --out-md {output.md:q} > {log:q} 2>&1"


rule scorecard:
    input:
        unpack(lambda wc: reports.scorecard_inputs(PLAN, wc.experiment)),
    output:
        csv=report(
            "results/{experiment}/tables/scorecard.csv",
            caption="../report/scorecard.rst",
            category="{experiment}",
            subcategory="1. scorecard",
        ),
        md=report(
            "results/{experiment}/tables/scorecard.md",
            caption="../report/scorecard.rst",
            category="{experiment}",
            subcategory="1. scorecard",
        ),
        json="results/{experiment}/tables/scorecard.json",
        html=report(
            "results/{experiment}/tables/scorecard.html",
            caption="../report/scorecard.rst",
            category="{experiment}",
            subcategory="1. scorecard",
        ),
    params:
        args=lambda wc, input: reports.file_args(dict(input.items())),
        extra=lambda wc: reports.scorecard_extra(PLAN, wc.experiment),
        tracker=TRACKER,
    log:
        "results/{experiment}/logs/scorecard.log",
    benchmark:
        "results/{experiment}/benchmarks/scorecard.tsv"
    threads: 1
    resources:
        mem_mb=light_mem,
        runtime=light_runtime,
    conda:
        CONDA_ENV
    shell:
        "python -m sparsebasin scorecard {params.args}{params.extra}{params.tracker} --out-csv {output.csv:q}"
        " --out-md {output.md:q} --out-json {output.json:q} --out-html {output.html:q} > {log:q} 2>&1"


rule summary:
    input:
        unpack(lambda wc: reports.summary_inputs(PLAN, wc.experiment)),
    output:
        report(
            "results/{experiment}/summary.md",
            caption="../report/summary.rst",
            category="{experiment}",
            subcategory="1. scorecard",
        ),
    params:
        args=lambda wc, input: reports.file_args(dict(input.items())),
    log:
        "results/{experiment}/logs/summary.log",
    benchmark:
        "results/{experiment}/benchmarks/summary.tsv"
    threads: 1
    resources:
        mem_mb=light_mem,
        runtime=light_runtime,
    conda:
        CONDA_ENV
    shell:
        "python -m sparsebasin summary {params.args} --out {output:q} > {log:q} 2>&1"


rule manifest:
    input:
        width_files,
    output:
        "results/{experiment}/{dataset}-{model}-w{width}/manifest.txt",
    log:
        "results/{experiment}/logs/{dataset}-{model}-w{width}/manifest.log",
    benchmark:
        "results/{experiment}/benchmarks/{dataset}-{model}-w{width}/manifest.tsv"
    threads: 1
    resources:
        mem_mb=100,
        runtime=1,
    conda:
        CONDA_ENV
    shell:
        "printf '%s\\n' {input:q} > {output:q} 2> {log:q}"
