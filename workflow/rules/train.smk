# One job per run: train (or resume) it, then evaluate its final model. One
# job, not two, halves the jobs a sweep plans; a change to the evaluation code
# alone reruns the job, whose train command then finds its run finished (the
# checkpoint records the training code) and only evaluates again.
rule train:
    input:
        data=job_value("dataset", lambda name: f"data/{name}.h5"),
    output:  # RUN_OUTPUTS
        history=f"{RESULTS}/{{run}}/history.csv",
        status=f"{RESULTS}/{{run}}/status.json",
        model=f"{RESULTS}/{{run}}/model.npz",
        metrics=f"{RESULTS}/{{run}}/metrics.json",
        diagnostics=f"{RESULTS}/{{run}}/diagnostics.csv",
    log:
        f"{LOGS}/train/{{run}}.log",
    # Longest runs first: with fewer cores than runs, the study ends soonest
    # when no long run starts last, and a freed core takes the next at once.
    priority: job_value("run", lambda run: run.epochs)
    conda:
        ENV
    threads: config.get("train_threads", 1)
    resources:
        mem_mb=job_value("mem_mb"),
        runtime=job_value("runtime"),
        gpu=job_value("gpu", int),
    params:
        # The whole run as JSON (its RunConfig): a change to any setting reruns exactly this run.
        run=lambda w: run_json(w.run),
        backend=job_value("backend"),
        code=command_version("train", "evaluate"),
        dir=lambda w: f"{RESULTS}/{w.run}",
    shell:
        logged(
            "mkdir -p {params.dir} && printf '%s\\n' {params.run:q} > {params.dir}/run.json && "
            "OPENBLAS_NUM_THREADS={threads} OMP_NUM_THREADS={threads} "
            "python -m pipeline train --run-config {params.dir}/run.json --backend {params.backend} "
            "--threads {threads} --out {params.dir} --quiet && "
            "python -m pipeline evaluate --run {params.dir} --data {input.data} --out {output.metrics}"
        )
