# Data: download (CIFAR/SVHN; accepts a readable copy already in data_dir without
# the network, else needs the internet, so a local rule that runs on the login
# node; its stamp {data_dir}/.sparsebasin/{dataset}.downloaded) and prepare
# (MNIST-1D generated offline; the other datasets are checked in place).
# Training jobs depend on the prepare stamp
# {data_dir}/.sparsebasin/{dataset}.prepared.json. Both are localrules.


rule download:
    output:
        touch(os.path.join(DATA_DIR, ".sparsebasin", "{dataset}.downloaded")),
    wildcard_constraints:
        dataset="|".join(DOWNLOADABLE),
    params:
        data_dir=lambda wc, output: data_dir_of(output[0]),
    log:
        "results/logs/data/download_{dataset}.log",
    benchmark:
        "results/benchmarks/data/download_{dataset}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=lambda wc, attempt: 60 * attempt,
    conda:
        CONDA_ENV
    shell:
        "python -m sparsebasin download --dataset {wildcards.dataset} --data-dir {params.data_dir:q} > {log:q} 2>&1"


rule prepare:
    input:
        prepare_input,
    output:
        os.path.join(DATA_DIR, ".sparsebasin", "{dataset}.prepared.json"),
    params:
        data_dir=lambda wc, output: data_dir_of(output[0]),
    log:
        "results/logs/data/prepare_{dataset}.log",
    benchmark:
        "results/benchmarks/data/prepare_{dataset}.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=lambda wc, attempt: 30 * attempt,
    conda:
        CONDA_ENV
    shell:
        "python -m sparsebasin prepare --dataset {wildcards.dataset} --data-dir {params.data_dir:q}"
        " --stamp {output:q} > {log:q} 2>&1"
