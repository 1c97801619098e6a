# Shared helpers: the runs the config asks for, their command-line arguments,
# and code versions that make jobs rerun when the package code they use changes.
import hashlib
import json
import sys
from pathlib import Path

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


def code_version(*modules):
    """Hash of the package modules a rule runs; a change to them reruns its jobs."""
    digest = hashlib.sha256()
    for module in sorted(modules):
        digest.update((ROOT / "pipeline" / module).read_bytes())
    return digest.hexdigest()[:12]


TRAIN_CODE = code_version(
    "autodiff.py", "backend.py", "data.py", "layers.py", "losses.py", "models.py",
    "optim.py", "primitives.py", "train.py", "tree.py",
)
EVALUATE_CODE = code_version("evaluate.py", "train.py", "data.py", "losses.py", "models.py", "primitives.py")
REPORT_CODE = code_version("report.py", "templates/summary.html.j2")


def _experiments():
    seen = {}
    for experiment in config["experiments"]:
        key = (experiment["dataset"], experiment["model"])
        if key in seen:
            raise ValueError(f"config: experiments lists {key[0]}/{key[1]} twice; merge the entries")
        seen[key] = experiment
    return seen


EXPERIMENTS = _experiments()


def run_settings(dataset, model, loss):
    """Everything a train job of this loss computes with (its `params`)."""
    experiment = EXPERIMENTS[(dataset, model)]
    override = dict(experiment["losses"][loss] or {})
    epochs = override.pop("epochs", experiment["epochs"])
    return {
        "optimizer": experiment["optimizer"],
        "hyperparameters": {**experiment.get("hyperparameters", {}), **override},
        "model_options": experiment.get("model_options", {}),
        "epochs": epochs,
        "batch_size": experiment["batch_size"],
        "train_size": experiment.get("train_size"),
        "test_size": experiment.get("test_size"),
        "augment": experiment.get("augment", False),
    }


def train_arguments(wildcards):
    s = run_settings(wildcards.dataset, wildcards.model, wildcards.loss)
    args = [f"--optimizer {s['optimizer']}", f"--epochs {s['epochs']}", f"--batch-size {s['batch_size']}"]
    args += [f"--hyper {key}={value}" for key, value in sorted(s["hyperparameters"].items())]
    args += [f"--model-option {key}={value}" for key, value in sorted(s["model_options"].items())]
    args += [f"--train-size {s['train_size']}"] if s["train_size"] else []
    args += [f"--test-size {s['test_size']}"] if s["test_size"] else []
    args += ["--augment"] if s["augment"] else []
    return " ".join(args)


def run_dirs():
    return [
        f"results/{dataset}/{model}/{loss}/seed{seed}"
        for (dataset, model), experiment in EXPERIMENTS.items()
        for loss in experiment["losses"]
        for seed in experiment["seeds"]
    ]


def raw_files(wildcards):
    return [f"data/raw/{wildcards.dataset}/{f.name}" for f in get_dataset(wildcards.dataset).files]


def experiment_value(key):
    return lambda wildcards: EXPERIMENTS[(wildcards.dataset, wildcards.model)].get(key)


wildcard_constraints:
    dataset="mnist|fashion_mnist|cifar10",
    model="knet_softmax|mlp|mnist_cnn|cifar_cnn",
    loss="ce|bce|nllr|mse|complement|negated_ce",
    seed=r"\d+",
