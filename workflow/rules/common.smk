# Shared helpers: every training run the config asks for (RUNS, keyed by its
# directory under results/), the study each belongs to, their command-line
# arguments, and code versions that make jobs rerun when the package code they
# use changes.
import datetime
import json
import os
import re
import sys
from pathlib import Path

from pipeline.archive import archive_name
from pipeline.codehash import code_version
from pipeline.datasets import REGISTRY as DATASET_REGISTRY
from pipeline.datasets import get as get_dataset

ROOT = Path(workflow.basedir)
ENV = "../envs/softloss.yaml"


def _uses_conda():
    try:
        from snakemake.settings.types import DeploymentMethod

        return DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method
    except (ImportError, AttributeError):
        return False


# Jobs run `python -m pipeline` with the package imported from this checkout.
# Without --use-conda, `python` is the interpreter running Snakemake (it has the
# dependencies, even from an unactivated virtual environment); with it, the
# rule's conda environment provides them.
# (Doubled braces: Snakemake formats the prefix like a shell command.)
_prefix = f"set -euo pipefail; export PYTHONPATH={ROOT}${{{{PYTHONPATH:+:$PYTHONPATH}}}}; "
if not _uses_conda():
    _prefix += f"export PATH={Path(sys.executable).parent}:$PATH; "
shell.prefix(_prefix)


# The package code each rule runs, found from its imports (pipeline/codehash.py).
TRAIN_CODE = code_version("train")
EVALUATE_CODE = code_version("evaluate")
REPORT_CODE = code_version("report", extra=["templates/summary.html.j2"])


# ---------------------------------------------------------------- runs
RUNS = {}  # run directory under results/ -> everything its train job computes with
STUDY_RUNS = {}  # study name -> its run directories ("main" is Table I)


def _add(study, run_id, **settings):
    if run_id in RUNS:
        raise ValueError(f"config: two entries ask for the same run {run_id}; merge them")
    RUNS[run_id] = settings
    STUDY_RUNS.setdefault(study, []).append(run_id)


BACKEND = config.get("backend", "auto")


def _common(entry, **changes):
    # GPU jobs (gpu: true) hold a GPU (resources: gpu=1) and compute with the
    # configured backend; all other jobs compute with NumPy on their CPU cores.
    on_gpu = entry.get("gpu", False) and BACKEND != "numpy"
    settings = {
        "dataset": entry["dataset"],
        "model": entry["model"],
        "model_options": entry.get("model_options", {}),
        "optimizer": entry["optimizer"],
        "hyperparameters": dict(entry.get("hyperparameters", {})),
        "loss": "ce",
        "epochs": entry["epochs"],
        "batch_size": entry["batch_size"],
        "train_size": entry.get("train_size"),
        "test_size": entry.get("test_size"),
        "augment": entry.get("augment", False),
        "feedback": None,
        "gpu": on_gpu,
        "backend": BACKEND if on_gpu else "numpy",
        "mem_mb": entry.get("mem_mb", 2000),
        "runtime": entry.get("runtime", 60),
    }
    settings.update(changes)
    return settings


for entry in config["experiments"]:
    for loss, override in entry["losses"].items():
        override = dict(override or {})
        epochs = override.pop("epochs", entry["epochs"])
        for seed in entry["seeds"]:
            _add("main", f"{entry['dataset']}/{entry['model']}/{loss}/seed{seed}",
                 **_common(entry, loss=loss, epochs=epochs, seed=seed,
                           hyperparameters={**entry.get("hyperparameters", {}), **override}))  # fmt: skip

STUDIES = config.get("studies") or {}
if "negative_feedback" in STUDIES:
    s = STUDIES["negative_feedback"]
    for seed in s["seeds"]:
        base = f"studies/negative_feedback/{s['dataset']}/{s['model']}"
        for q in s["fractions"]:
            if q == 0:  # no negatives: one run serves every treatment and every way of choosing l
                _add("negative_feedback", f"{base}/none/q0/none/seed{seed}", **_common(s, seed=seed))
                continue
            for how in s["wrong_labels"]:
                for treatment in s["treatments"]:
                    _add("negative_feedback", f"{base}/{how}/q{q}/{treatment}/seed{seed}",
                         **_common(s, seed=seed, feedback={"fraction": q, "wrong_label": how, "treatment": treatment}))  # fmt: skip
if "log_loss" in STUDIES:
    s = STUDIES["log_loss"]
    for model, m in s["models"].items():
        entry = {**s, **m, "model": model}
        for lr in m["learning_rates"]:
            for loss in s["losses"]:
                for seed in s["seeds"]:
                    _add("log_loss", f"studies/log_loss/{s['dataset']}/{model}/lr{lr}/{loss}/seed{seed}",
                         **_common(entry, loss=loss, seed=seed, hyperparameters={**m.get("hyperparameters", {}), "lr": lr}))  # fmt: skip
if "knet_softmax" in STUDIES:
    s = STUDIES["knet_softmax"]
    entry = {**s, "dataset": "mnist", "model": "knet_softmax", "optimizer": "sgd"}
    for seed in s["seeds"]:
        _add("knet_softmax", f"studies/knet_softmax/mnist/knet_softmax/ce/seed{seed}",
             **_common(entry, seed=seed, hyperparameters={"lr": s["lr"]}))  # fmt: skip

def _check_against_signatures():
    """Every run's model options and optimizer hyperparameters, built for real
    before any job runs: the schema checks their types, these their names and
    ranges (an unknown keyword, a negative rate)."""
    from pipeline import models, optim

    problems = {}
    for run_id, s in RUNS.items():
        for build, name, keywords in ((models.build, s["model"], s["model_options"]),
                                      (optim.build, s["optimizer"], s["hyperparameters"])):  # fmt: skip
            try:
                build(name, **keywords)
            except ValueError as error:
                problems.setdefault(str(error), run_id)
    if problems:  # one line each, no traceback: the config is wrong, not the workflow
        for error, run_id in problems.items():
            print(f"config error: {error} (run {run_id})", file=sys.stderr)
        raise SystemExit(1)


_check_against_signatures()

DATASETS = sorted({settings["dataset"] for settings in RUNS.values()})


def train_arguments(run_id):
    s = RUNS[run_id]
    args = [f"--model {s['model']}", f"--loss {s['loss']}", f"--seed {s['seed']}", f"--optimizer {s['optimizer']}",
            f"--epochs {s['epochs']}", f"--batch-size {s['batch_size']}", f"--backend {s['backend']}"]  # fmt: skip
    args += [f"--hyper {key}={value}" for key, value in sorted(s["hyperparameters"].items())]
    args += [f"--model-option {key}={value}" for key, value in sorted(s["model_options"].items())]
    args += [f"--train-size {s['train_size']}"] if s["train_size"] else []
    args += [f"--test-size {s['test_size']}"] if s["test_size"] else []
    args += ["--augment"] if s["augment"] else []
    if s["feedback"]:
        fb = s["feedback"]
        args += [f"--feedback-fraction {fb['fraction']}", f"--feedback-label {fb['wrong_label']}",
                 f"--feedback-treatment {fb['treatment']}"]  # fmt: skip
    return " ".join(args)


def computed_settings(run_id):
    """The part of a run's settings that changes its results (not its resources)."""
    return json.dumps({k: v for k, v in RUNS[run_id].items() if k not in ("mem_mb", "runtime", "gpu")}, sort_keys=True)


def raw_files(wildcards):
    return [f"data/raw/{wildcards.dataset}/{f.name}" for f in get_dataset(wildcards.dataset).files]


def run_value(key):
    return lambda wildcards: RUNS[wildcards.run][key]


def study_summary(study):
    return "results/summary.json" if study == "main" else f"results/studies/{study}.json"


def report_inputs(wildcards):
    inputs = {"summary": "results/summary.json", "data": [f"data/{d}.h5" for d in DATASETS]}
    inputs["studies"] = [study_summary(s) for s in STUDY_RUNS if s != "main"]
    if "knet_softmax" in STUDY_RUNS:
        inputs["toy"] = "results/studies/knet_softmax/toy_boundaries.json"
    return inputs


wildcard_constraints:
    dataset="|".join(DATASET_REGISTRY),
    run="|".join(re.escape(run_id) for run_id in RUNS),
    study="|".join(re.escape(s) for s in STUDY_RUNS if s != "main") or "none",
