rule train:
    input:
        "data/{dataset}.h5",
    output:
        history="results/{dataset}/{model}/{loss}/seed{seed}/history.csv",
        status="results/{dataset}/{model}/{loss}/seed{seed}/status.json",
        model="results/{dataset}/{model}/{loss}/seed{seed}/model.npz",
    conda:
        ENV
    params:
        # Every setting the job computes with, so that changing one reruns exactly its jobs.
        settings=lambda w: json.dumps(run_settings(w.dataset, w.model, w.loss), sort_keys=True),
        arguments=train_arguments,
        code=TRAIN_CODE,
        run_dir=lambda w: f"results/{w.dataset}/{w.model}/{w.loss}/seed{w.seed}",
    log:
        "logs/train/{dataset}/{model}/{loss}/seed{seed}.log",
    threads: config.get("train_threads", 1)
    resources:
        mem_mb=experiment_value("mem_mb"),
        runtime=experiment_value("runtime"),
        gpu=lambda w: 1 if EXPERIMENTS[(w.dataset, w.model)].get("gpu") else 0,
    shell:
        "OPENBLAS_NUM_THREADS={threads} OMP_NUM_THREADS={threads} "
        "python -m pipeline train --data {input} --model {wildcards.model} --loss {wildcards.loss} "
        "--seed {wildcards.seed} {params.arguments} --out {params.run_dir} --quiet > {log} 2>&1"


rule evaluate:
    input:
        data="data/{dataset}.h5",
        status="results/{dataset}/{model}/{loss}/seed{seed}/status.json",
        model="results/{dataset}/{model}/{loss}/seed{seed}/model.npz",
    output:
        "results/{dataset}/{model}/{loss}/seed{seed}/metrics.json",
    conda:
        ENV
    params:
        code=EVALUATE_CODE,
        run_dir=lambda w: f"results/{w.dataset}/{w.model}/{w.loss}/seed{w.seed}",
    log:
        "logs/evaluate/{dataset}/{model}/{loss}/seed{seed}.log",
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "python -m pipeline evaluate --run {params.run_dir} --data {input.data} --out {output} > {log} 2>&1"
