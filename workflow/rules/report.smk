# One summary per study: results/summary.json (Table I) and
# results/studies/{study}.json (a side study).
rule aggregate:
    input:
        metrics=lambda w: [f"results/{r}/metrics.json" for r in STUDY_RUNS[summary_study(w.summary)]],
        histories=lambda w: [f"results/{r}/history.csv" for r in STUDY_RUNS[summary_study(w.summary)]],
    output:
        "results/{summary}.json",
    conda:
        ENV
    params:
        run_dirs=lambda w: " ".join(f"results/{r}" for r in STUDY_RUNS[summary_study(w.summary)]),
        incomplete=lambda w: incomplete_runs(w.summary),
        code=command_version("aggregate"),
    log:
        "logs/aggregate/{summary}.log",
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        logged("python -m pipeline aggregate --runs {params.run_dirs} --out {output}")


rule toy_boundaries:
    output:
        "results/studies/knet_softmax/toy_boundaries.json",
    conda:
        ENV
    params:
        code=command_version("toy"),
    log:
        "logs/toy_boundaries.log",
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        logged("python -m pipeline toy --out {output}")


rule report:
    input:
        unpack(report_inputs),
    output:
        "reports/summary.html",
    conda:
        ENV
    params:
        config=lambda w: json.dumps(config, sort_keys=True),
        studies=lambda w, input: " ".join(f"--study {p}" for p in input.get("studies", [])),
        inputs=lambda w, input: study_inputs(input),
        code=command_version("report"),
    log:
        "logs/report.log",
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        logged("python -m pipeline report --summary {input.summary} --data {input.data} {params.studies} "
               "{params.inputs} --config-json {params.config:q} --out {output}")


# Each study is its own target: `snakemake --cores 8 negative_feedback` (or log_loss, knet_softmax).
for _study in [s for s in STUDY_RUNS if s != "main"]:

    rule:
        name:
            _study
        input:
            study_summary(_study),
        localrule: True
        default_target: False


# `snakemake --cores 1 archive`: config, versions, checksums, every run's files
# and the report, with a MANIFEST of SHA-256s (check with verify-archive).
ARCHIVE = f"reports/{archive_name(datetime.date.today())}"


rule make_archive:
    input:
        unpack(report_inputs),
        report="reports/summary.html",
    output:
        ARCHIVE,
    conda:
        ENV
    params:
        config=lambda w: json.dumps(config, sort_keys=True),
        summaries=lambda w, input: " ".join([input.summary, *input.get("studies", [])]),
        code=command_version("archive"),
    log:
        "logs/archive.log",
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        logged("python -m pipeline archive --summary {params.summaries} --report {input.report} --data {input.data} "
               "--config-json {params.config:q} --out {output}")


rule archive:
    input:
        ARCHIVE,
    localrule: True


# `snakemake --cores 1 --nolock snapshot`: while a long study trains (its own
# snakemake holds the lock), an archive of its Table I runs as they stand, in
# reports/snapshots/: runs still training at the epoch they reached, runs not
# started left out, the study's own files untouched. A new one each time.
SNAPSHOT = f"reports/snapshots/{snapshot_name(datetime.datetime.now())}"


rule make_snapshot:
    input:
        data=lambda w: sorted({f"data/{JOBS[r].dataset}.h5" for r in STUDY_RUNS.get("main", [])}),
    output:
        SNAPSHOT,
    conda:
        ENV
    params:
        run_dirs=lambda w: " ".join(f"results/{r}" for r in STUDY_RUNS.get("main", [])),
        config=lambda w: json.dumps(config, sort_keys=True),
        code=command_version("snapshot"),
    log:
        "logs/snapshot.log",
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        logged("python -m pipeline snapshot --runs {params.run_dirs} --data {input.data} "
               "--config-json {params.config:q} --out {output}")


rule snapshot:
    input:
        SNAPSHOT,
    localrule: True
