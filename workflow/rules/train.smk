rule train:
    input:
        data=lambda w: f"data/{JOBS[w.run].dataset}.h5",
    output:
        history="results/{run}/history.csv",
        status="results/{run}/status.json",
        model="results/{run}/model.npz",
    conda:
        ENV
    params:
        # The whole run as JSON (its RunConfig): a change to any setting reruns exactly this run.
        run=lambda w: run_json(w.run),
        backend=job_value("backend"),
        code=command_version("train"),
        run_dir=lambda w, output: os.path.dirname(output.history),
    log:
        "logs/train/{run}.log",
    threads: config.get("train_threads", 1)
    resources:
        mem_mb=job_value("mem_mb"),
        runtime=job_value("runtime"),
        gpu=lambda w: 1 if JOBS[w.run].gpu else 0,
    shell:
        logged("mkdir -p {params.run_dir} && printf '%s\\n' {params.run:q} > {params.run_dir}/run.json && "
               "OPENBLAS_NUM_THREADS={threads} OMP_NUM_THREADS={threads} "
               "python -m pipeline train --run-config {params.run_dir}/run.json --backend {params.backend} "
               "--out {params.run_dir} --quiet")


rule evaluate:
    input:
        data=lambda w: f"data/{JOBS[w.run].dataset}.h5",
        status="results/{run}/status.json",
        model="results/{run}/model.npz",
    output:
        "results/{run}/metrics.json",
    conda:
        ENV
    params:
        code=command_version("evaluate"),
        run_dir=lambda w, input: os.path.dirname(input.status),
    log:
        "logs/evaluate/{run}.log",
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        logged("python -m pipeline evaluate --run {params.run_dir} --data {input.data} --out {output}")
