"""From a study config (config/config.yaml and friends, already checked against
the schema) to its training runs: `plan(config, studies) -> {run_id: Job}`.

A run id is the run's directory under `results/`: `{dataset}/{model}/{loss}/seed{seed}`
for Table I ("main"), `studies/{study}/...` for the side studies. Each Job holds
the `RunConfig` the train command computes with (written to `run.json`, which
Snakemake compares for reruns) and what the job needs from the machine.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from pathlib import Path

from ..common.errors import SoftlossError
from ..core.losses import LOSSES
from ..datasets.folders import class_names
from ..datasets.registry import REGISTRY
from ..runs import user_loss
from ..runs.config import RunConfig, batch_fits

DEFAULT_MEM_MB, DEFAULT_RUNTIME = 2000, 60


@dataclass(frozen=True)
class Job:
    study: str  # "main" (Table I) or a side study's name
    run: RunConfig
    backend: str  # what it computes with: "numpy", or the config's backend for a GPU job
    gpu: bool  # holds a GPU (resources: gpu=1)
    mem_mb: int = DEFAULT_MEM_MB
    runtime: int = DEFAULT_RUNTIME  # minutes

    @property
    def dataset(self):
        return self.run.data.removeprefix("data/").removesuffix(".h5")


def job(
    study,
    entry,
    backend,
    *,
    loss="ce",
    seed,
    epochs=None,
    hyperparameters=None,
    feedback=None,
    loss_options=None,
    loss_source=None,
):
    """The Job of one run of a config `entry` (an experiment, or a study's block)."""
    # GPU jobs (gpu: true) hold a GPU and compute with the configured backend;
    # every other job computes with NumPy on its CPU cores.
    on_gpu = bool(entry.get("gpu", False)) and backend != "numpy"
    run = RunConfig(
        data=f"data/{entry['dataset']}.h5",
        model=entry["model"],
        loss=loss,
        optimizer=entry["optimizer"],
        epochs=epochs or entry["epochs"],
        batch_size=entry["batch_size"],
        seed=seed,
        hyperparameters=dict(
            entry.get("hyperparameters", {}) if hyperparameters is None else hyperparameters
        ),
        model_options=dict(entry.get("model_options") or {}),
        train_size=entry.get("train_size"),
        test_size=entry.get("test_size"),
        augment=entry.get("augment", False),
        train_eval_every=entry.get("train_eval_every", 1),
        feedback=feedback,
        loss_options=dict(loss_options or {}),
        loss_source=loss_source,
    )
    return Job(
        study,
        run,
        backend if on_gpu else "numpy",
        on_gpu,
        entry.get("mem_mb", DEFAULT_MEM_MB),
        entry.get("runtime", DEFAULT_RUNTIME),
    )


def _user_loss(config, loss):
    """The loss_source of a loss declared under `user_losses:`, or None for a built-in one."""
    declared = (config.get("user_losses") or {}).get(loss)
    if declared is None:
        return None
    if loss in LOSSES:
        raise SoftlossError(
            f"user_losses/{loss}: {loss} is a built-in loss; declare your own under another name"
        )
    return user_loss.source(declared["file"], declared.get("function", loss))


def _loss_options(entry, loss, override):
    """The loss's own settings, under `loss_options` (or `options`, its older name, with a note)."""
    if "options" in override:
        print(
            f"note: experiments ({entry['dataset']}/{entry['model']}): losses/{loss}/options is now called "
            "loss_options; options is still read",
            file=sys.stderr,
        )
    return {**override.pop("options", {}), **override.pop("loss_options", {})}


def _main(config, backend):
    for entry in config["experiments"]:
        for loss, override in entry["losses"].items():
            override = dict(override or {})
            epochs = override.pop("epochs", entry["epochs"])
            options, source = _loss_options(entry, loss, override), _user_loss(config, loss)
            for seed in entry["seeds"]:
                yield (
                    f"{entry['dataset']}/{entry['model']}/{loss}/seed{seed}",
                    job(
                        "main",
                        entry,
                        backend,
                        loss=loss,
                        seed=seed,
                        epochs=epochs,
                        loss_options=options,
                        loss_source=source,
                        hyperparameters={**entry.get("hyperparameters", {}), **override},
                    ),
                )


def plan(config, studies):
    """{run_id: Job} of every training run `config` asks for, Table I's first,
    then the runs each side study in `studies` ({name: module}, pipeline.studies)
    describes for its block of the config."""
    backend = config.get("backend", "auto")
    planned = list(_main(config, backend))
    for name, study in studies.items():
        if name in (config.get("studies") or {}):
            planned += [
                (run_id, job(name, entry, backend, **overrides))
                for run_id, entry, overrides in study.runs(config["studies"][name])
            ]
    jobs = {}
    for run_id, planned_job in _staged(planned, config.get("stage")):
        if run_id in jobs:
            raise SoftlossError(f"config: two entries ask for the same run {run_id}; merge them")
        jobs[run_id] = planned_job
    return jobs


def _staged(planned, stage):
    """The (run_id, Job)s of `planned` in the cut `stage` asks for: only its
    seeds, epochs capped at its max_epochs (the config's `stage`)."""
    stage = stage or {}
    seeds = {planned_job.run.seed for _, planned_job in planned}
    if missing := sorted(set(stage.get("seeds", ())) - seeds):
        raise SoftlossError(
            f"stage/seeds: no run of this config has seed {', '.join(map(str, missing))} "
            f"(its seeds: {', '.join(map(str, sorted(seeds)))})"
        )
    for run_id, planned_job in planned:
        if "seeds" in stage and planned_job.run.seed not in stage["seeds"]:
            continue
        if "max_epochs" in stage and planned_job.run.epochs > stage["max_epochs"]:
            planned_job = replace(planned_job, run=replace(planned_job.run, epochs=stage["max_epochs"]))
        yield run_id, planned_job


def problems(jobs, declared=None, data_dir=Path("data")):
    """One line per distinct problem a run would hit at its start (an unknown
    optimizer keyword or model option, a negative rate, a dataset that is
    neither registered nor declared, more examples than a split has, ...),
    naming one run that has it: `RunConfig.validate` builds the model and
    optimizer for real. `declared`: the config's `datasets` block."""
    found, classes, lines = {}, {}, _declared_problems(declared or {})
    for run_id, planned in jobs.items():
        name = planned.dataset
        if name not in classes:
            classes[name] = _class_count(name, declared or {}, data_dir, lines)
        for error in planned.run.problems(classes[name] or 10):
            found.setdefault(error, run_id)
        try:
            _check_dataset(planned, declared or {}, data_dir)
        except SoftlossError as error:
            found.setdefault(str(error), run_id)
    return [f"{error} (run {run_id})" for error, run_id in found.items()] + lines


def _class_count(name, declared, data_dir, lines):
    """How many classes the dataset `name` has (None where that cannot be known
    yet); what is wrong with a declared one's classes goes to `lines`."""
    if name in REGISTRY:
        return len(REGISTRY[name].classes) or None
    entry = declared.get(name)
    paths = ([entry["folder"]] if "folder" in entry else entry.get("archives", [])) if entry else []
    if not paths or not all(Path(p).exists() for p in paths):
        return None  # an unknown name, or a missing folder: said apart
    try:
        return len(class_names(name, paths))
    except SoftlossError as error:
        lines.append(f"datasets/{name}: {error}")
        return None


def _split_sizes(dataset, data_dir):
    """{split: examples} of a dataset: the registry's, or its prepared file's; {} if unknown yet."""
    if dataset in REGISTRY:
        return REGISTRY[dataset].split_sizes or {}
    path = data_dir / f"{dataset}.h5"
    if not path.is_file():
        return {}
    import h5py

    try:
        with h5py.File(path, "r") as h5:
            return {split: len(h5[split]["labels"]) for split in ("train", "test") if split in h5}
    except (OSError, KeyError):
        return {}  # the train job names what is wrong with the file


def _check_dataset(planned, declared, data_dir):
    """A run's dataset exists (registered, or declared under `datasets:`) and
    has the examples its train_size and test_size ask for."""
    name = planned.dataset
    if name not in REGISTRY and name not in declared:
        raise SoftlossError(
            f"dataset {name!r} is neither registered ({', '.join(REGISTRY)}) nor declared under "
            "datasets: (a class folder of your own)"
        )
    sizes = _split_sizes(name, data_dir)
    for split, size in (("train", planned.run.train_size), ("test", planned.run.test_size)):
        if size is not None and split in sizes and size > sizes[split]:
            raise SoftlossError(
                f"{split}_size {size} is more than the {sizes[split]:,} {split} examples of {name}"
            )
    train = planned.run.train_size or sizes.get("train")
    if train is not None:
        batch_fits(planned.run.batch_size, train, name)


def _declared_problems(declared):
    """Declared class-folder datasets: not a registered name, and their folder or archives there."""
    lines = []
    for name, entry in sorted(declared.items()):
        if name in REGISTRY:
            lines.append(
                f"datasets/{name}: {name} is a registered dataset; declare your own under another name"
            )
        for path in [entry["folder"]] if "folder" in entry else entry.get("archives", []):
            if not Path(path).exists():
                lines.append(f"datasets/{name}: {path}: no such {'folder' if 'folder' in entry else 'file'}")
    return lines
