rule train:
    input:
        lambda w: f"data/{RUNS[w.run]['dataset']}.h5",
    output:
        history="results/{run}/history.csv",
        status="results/{run}/status.json",
        model="results/{run}/model.npz",
    conda:
        ENV
    params:
        # Every setting the job computes with, so that changing one reruns exactly its jobs.
        settings=lambda w: computed_settings(w.run),
        arguments=lambda w: train_arguments(w.run),
        code=TRAIN_CODE,
        run_dir=lambda w, output: os.path.dirname(output.history),
    log:
        "logs/train/{run}.log",
    threads: config.get("train_threads", 1)
    resources:
        mem_mb=run_value("mem_mb"),
        runtime=run_value("runtime"),
        gpu=lambda w: 1 if RUNS[w.run]["gpu"] else 0,
    shell:
        "OPENBLAS_NUM_THREADS={threads} OMP_NUM_THREADS={threads} "
        "python -m pipeline train --data {input} {params.arguments} --out {params.run_dir} --quiet > {log} 2>&1 || (tail -n 1 {log} >&2; exit 1)"


rule evaluate:
    input:
        data=lambda w: f"data/{RUNS[w.run]['dataset']}.h5",
        status="results/{run}/status.json",
        model="results/{run}/model.npz",
    output:
        "results/{run}/metrics.json",
    conda:
        ENV
    params:
        code=EVALUATE_CODE,
        run_dir=lambda w, input: os.path.dirname(input.status),
    log:
        "logs/evaluate/{run}.log",
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "python -m pipeline evaluate --run {params.run_dir} --data {input.data} --out {output} > {log} 2>&1 || (tail -n 1 {log} >&2; exit 1)"
