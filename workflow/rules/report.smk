# One summary per study: {RESULTS}/summary.json (Table I) and
# {RESULTS}/studies/{study}.json (a side study).
rule aggregate:
    input:
        metrics=lambda w: [f"{RESULTS}/{r}/metrics.json" for r in STUDY_RUNS[summary_study(w.summary)]],
        histories=lambda w: [f"{RESULTS}/{r}/history.csv" for r in STUDY_RUNS[summary_study(w.summary)]],
    output:
        f"{RESULTS}/{{summary}}.json",
    log:
        f"{LOGS}/aggregate/{{summary}}.log",
    conda:
        ENV
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        run_dirs=lambda w: " ".join(f"{RESULTS}/{r}" for r in STUDY_RUNS[summary_study(w.summary)]),
        incomplete=lambda w: incomplete_runs(w.summary),
        code=command_version("aggregate"),
    shell:
        logged("python -m pipeline aggregate --runs {params.run_dirs} --out {output}")


rule toy_boundaries:
    output:
        f"{RESULTS}/studies/knet_softmax/toy_boundaries.json",
    log:
        f"{LOGS}/toy_boundaries.log",
    conda:
        ENV
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        code=command_version("toy"),
    shell:
        logged("python -m pipeline toy --out {output}")


rule report:
    input:
        unpack(report_inputs),
    output:
        html=report(f"{REPORTS}/summary.html", caption="../report/summary.rst", category="Report"),
        figures=report(
            directory(f"{REPORTS}/figures"),
            patterns=["{name}.png", "{name}.csv"],
            caption="../report/figures.rst",
            category="Figures",
        ),
    log:
        f"{LOGS}/report.log",
    conda:
        ENV
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        config=lambda w: json.dumps(config, sort_keys=True),
        studies=lambda w, input: " ".join(f"--study {p}" for p in input.get("studies", [])),
        inputs=lambda w, input: study_inputs(input),
        code=command_version("report"),
    shell:
        logged(
            "python -m pipeline report --summary {input.summary} --data {input.data} {params.studies} "
            "{params.inputs} --config-json {params.config:q} --out {output.html} --figures {output.figures}"
        )


# reports/summary.html: the report of the config last asked for it, each
# config's own staying in reports/NAME/.
rule latest_report:
    input:
        f"{REPORTS}/summary.html",
    output:
        "reports/summary.html",
    log:
        f"{LOGS}/latest_report.log",
    localrule: True
    conda:
        ENV
    shell:
        logged("cp {input} {output}")


# Each study is its own target: `snakemake --cores 8 negative_feedback` (or log_loss, knet_softmax).
for _study in [s for s in STUDY_RUNS if s != "main"]:

    rule:
        name:
            _study
        default_target: False
        input:
            study_summary(_study),
        localrule: True


# `snakemake --cores 1 archive`: config, versions, checksums, every run's files
# and the report, with a MANIFEST of SHA-256s (check with verify-archive).
ARCHIVE = f"{REPORTS}/{archive_name(datetime.date.today())}"


rule make_archive:
    input:
        unpack(report_inputs),
        report=f"{REPORTS}/summary.html",
    output:
        ARCHIVE,
    log:
        f"{LOGS}/archive.log",
    conda:
        ENV
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        config=lambda w: json.dumps(config, sort_keys=True),
        summaries=lambda w, input: " ".join([input.summary, *input.get("studies", [])]),
        code=command_version("archive"),
    shell:
        logged(
            "python -m pipeline archive --summary {params.summaries} --report {input.report} --data {input.data} "
            "--config-json {params.config:q} --out {output}"
        )


rule archive:
    input:
        ARCHIVE,
    localrule: True


# `snakemake --cores 1 --nolock snapshot`: while a long study trains (its own
# snakemake holds the lock), an archive of its Table I runs as they stand, in
# reports/NAME/snapshots/: runs still training at the epoch they reached, runs
# not started left out, the study's own files untouched. A new one each time.
SNAPSHOT = f"{REPORTS}/snapshots/{snapshot_name(datetime.datetime.now())}"


rule make_snapshot:
    output:
        SNAPSHOT,
    log:
        f"{LOGS}/snapshot.log",
    conda:
        ENV
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        run_dirs=lambda w: " ".join(f"{RESULTS}/{r}" for r in STUDY_RUNS.get("main", [])),
        # the prepared data's checksums, where it is there: a snapshot never fetches or prepares
        data=lambda w: " ".join(
            d
            for d in sorted({f"data/{JOBS[r].dataset}.h5" for r in STUDY_RUNS.get("main", [])})
            if os.path.exists(d)
        ),
        # fmt: skip
        config=lambda w: json.dumps(config, sort_keys=True),
        code=command_version("snapshot"),
    shell:
        logged(
            "python -m pipeline snapshot --runs {params.run_dirs} --data {params.data} "
            "--config-json {params.config:q} --out {output}"
        )


rule snapshot:
    input:
        SNAPSHOT,
    localrule: True


# `snakemake --cores 1 --config reproduce=ARCHIVE -- reproduce`: every run of an
# archive retrained from its own record and compared epoch by epoch (its data
# fetched and prepared first).
REPRODUCED = f"{REPORTS}/reproduced/{Path(config['reproduce'] or 'none').name.removesuffix('.tar.gz')}.txt"


rule reproduce_archive:
    input:
        archive=config["reproduce"] or [],
        data=lambda w: archive_datasets(config["reproduce"]) if config["reproduce"] else [],
    output:
        REPRODUCED,
    log:
        f"{LOGS}/reproduce.log",
    conda:
        ENV
    resources:
        mem_mb=4000,
        runtime=600,
    params:
        code=command_version("reproduce"),
    shell:
        logged("python -m pipeline reproduce {input.archive} all --out {output}")


rule reproduce:
    input:
        REPRODUCED if config["reproduce"] else [],
    log:
        f"{LOGS}/reproduce_target.log",
    localrule: True
    conda:
        ENV
    shell:
        logged(
            "test -n '{input}' || {{ echo 'config error: give the archive: --config reproduce=ARCHIVE'; exit 1; }}"
        )
