# Downloads run where Snakemake runs: a cluster's compute nodes often have no internet.
localrules:
    fetch,


rule fetch:
    output:
        "data/raw/{dataset}/{file}",
    conda:
        ENV
    params:
        mirrors=" ".join(f"--mirror {m}" for m in config.get("mirrors", [])),
    log:
        "logs/fetch/{dataset}/{file}.log",
    resources:
        mem_mb=500,
        runtime=60,
    shell:
        "python -m pipeline fetch {wildcards.dataset} --only {wildcards.file} --out data/raw/{wildcards.dataset} {params.mirrors} --quiet > {log} 2>&1 || (tail -n 1 {log} >&2; exit 1)"


rule prepare:
    input:
        raw_files,
    output:
        "data/{dataset}.h5",
    conda:
        ENV
    params:
        code=code_version("data"),
    log:
        "logs/prepare/{dataset}.log",
    resources:
        mem_mb=2000,
        runtime=30,
    shell:
        "python -m pipeline prepare {wildcards.dataset} --raw data/raw/{wildcards.dataset} --out {output} > {log} 2>&1 || (tail -n 1 {log} >&2; exit 1)"
