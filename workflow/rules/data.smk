rule fetch:
    output:
        "data/raw/{dataset}/{file}",
    log:
        "logs/fetch/{dataset}/{file}.log",
    localrule: True  # downloads run where Snakemake runs: a cluster's compute nodes often have no internet
    conda:
        ENV
    resources:
        mem_mb=500,
        runtime=60,
    params:
        mirrors=" ".join(f"--mirror {shlex.quote(m)}" for m in config.get("mirrors", [])),
        vendored=ROOT / "data" / "raw" / "vendored",  # the checkout's own copies, wherever the workdir is
        code=command_version("fetch"),
    shell:
        logged(
            "python -m pipeline fetch {wildcards.dataset} --only {wildcards.file} --out data/raw/{wildcards.dataset} "
            "{params.mirrors} --vendored {params.vendored:q} --quiet"
        )


rule prepare:
    input:
        raw_files,
    output:
        "data/{dataset}.h5",
    log:
        "logs/prepare/{dataset}.log",
    conda:
        ENV
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        code=command_version("prepare"),
    shell:
        logged(
            "python -m pipeline prepare {wildcards.dataset} --raw data/raw/{wildcards.dataset} --out {output}"
        )


# A class-folder dataset of one's own, declared under `datasets:` in the config:
# prepared from its folder or archives (nothing to fetch), and again whenever a
# file in them is added, removed or edited (`files`).
rule prepare_folder:
    input:
        lambda w: folder_paths(w.folder_dataset),
    output:
        "data/{folder_dataset}.h5",
    log:
        "logs/prepare/{folder_dataset}.log",
    conda:
        ENV
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        code=command_version("prepare"),
        files=lambda w: listing_digest(folder_paths(w.folder_dataset)),
    shell:
        logged(
            "python -m pipeline prepare {wildcards.folder_dataset} --image-folder --raw {input:q} --out {output}"
        )
