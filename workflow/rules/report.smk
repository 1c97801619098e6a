rule aggregate:
    input:
        metrics=[f"{d}/metrics.json" for d in run_dirs()],
        histories=[f"{d}/history.csv" for d in run_dirs()],
    output:
        "results/summary.json",
    conda:
        ENV
    params:
        run_dirs=" ".join(run_dirs()),
        code=code_version("report.py"),
    log:
        "logs/aggregate.log",
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "python -m pipeline aggregate --runs {params.run_dirs} --out {output} > {log} 2>&1"


rule report:
    input:
        summary="results/summary.json",
        data=lambda w: sorted({f"data/{dataset}.h5" for dataset, _ in EXPERIMENTS}),
    output:
        "reports/summary.html",
    conda:
        ENV
    params:
        config=lambda w: json.dumps(config, sort_keys=True),
        code=REPORT_CODE,
    log:
        "logs/report.log",
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "python -m pipeline report --summary {input.summary} --data {input.data} "
        "--config-json {params.config:q} --out {output} > {log} 2>&1"
