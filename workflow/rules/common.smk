# Shared helpers: every training run the config asks for (JOBS, planned by
# pipeline/plan/jobs.py), the study each belongs to, the log-and-report suffix
# of every rule's command, and code versions (pipeline.cli.command_version)
# that make a rule's jobs rerun when the package code its command runs changes.
import datetime
import json
import os
import re
import shlex
import sys
from pathlib import Path

from pipeline.cli import command_version
from pipeline.datasets.folders import listing_digest
from pipeline.datasets.registry import REGISTRY as DATASET_REGISTRY
from pipeline.datasets.registry import get as get_dataset
from pipeline.plan.configcheck import check, config_name
from pipeline.report.archive import archive_name, snapshot_name
from pipeline.studies import STUDIES

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
# Paths quoted: a checkout's path may hold spaces.
_prefix = (
    f'set -euo pipefail; export PYTHONPATH={shlex.quote(str(ROOT))}"${{{{PYTHONPATH:+:$PYTHONPATH}}}}"; '
)
if not _uses_conda():
    _prefix += f'export PATH={shlex.quote(str(Path(sys.executable).parent))}":$PATH"; '

shell.prefix(_prefix)


RUN_OUTPUTS = (
    "history.csv",
    "status.json",
    "model.npz",
    "metrics.json",
    "diagnostics.csv",
)  # the train rule's, per run


def logged(command):
    """A rule's shell command with its output in the rule's log and, if it
    fails, the log's last line (softloss' one-line error) on the terminal."""
    return f"({command}) > {{log}} 2>&1 || (tail -n 1 {{log}} >&2; exit 1)"


# A profile's `$NAME` reaches the job's submission as it is, for its shell to
# expand (profiles/slurm reads the partition and account so): unset, a job
# would ask SLURM for a partition of no name. Say so before any job.
for _name, _resource in (workflow.resource_settings.default_resources or {}).items():
    _unset = re.fullmatch(r"\$\{?(\w+)\}?", _resource.raw.strip()) if isinstance(_resource.raw, str) else None
    if _unset and _unset.group(1) not in os.environ:
        print(
            f"config error: default resource {_name} is {_resource.raw}, but the environment variable "
            f"{_unset.group(1)} is not set: export it, or pass --default-resources {_name}=...",
            file=sys.stderr,
        )
        raise SystemExit(1)


# ---------------------------------------------------------------- runs
# Every training run the config asks for, planned in the package
# (pipeline/plan/jobs.py): run directory under results/ -> Job (its RunConfig and
# its resources). STUDY_RUNS: study -> its run directories ("main" is Table I).
# The one validation `python -m pipeline check-config` runs too.
JOBS, _problems = check(config, STUDIES, schema_path=None)  # the Snakefile validated the schema
if _problems:  # one line each, no traceback: the config is wrong, not the workflow
    for line in _problems:
        print(f"config error: {line}", file=sys.stderr)
    raise SystemExit(1)
# Each config's files under its own name (pipeline.plan.configcheck.config_name):
# configs run in one checkout never touch each other's runs.
try:
    NAME = config_name(config, workflow.overwrite_configfiles)
except SoftlossError as error:
    print(f"config error: {error}", file=sys.stderr)
    raise SystemExit(1)
RESULTS, LOGS, REPORTS = f"results/{NAME}", f"logs/{NAME}", f"reports/{NAME}"
STUDY_RUNS = {}
for _run_id, _job in JOBS.items():
    STUDY_RUNS.setdefault(_job.study, []).append(_run_id)
DATASETS = sorted({job.dataset for job in JOBS.values()})
FOLDER_DATASETS = config.get("datasets") or {}  # class folders of one's own, by name


def run_json(run_id):
    """What the train job computes: its RunConfig as JSON (a param of the train
    rule, written to the run's run.json for the train command)."""
    return json.dumps(JOBS[run_id].run.to_dict(), sort_keys=True)


def job_value(key, of=None):
    """A rule's value from each run's Job, of(job.key) (job.key without
    `of`), as one value when every run has the same (a sweep of thousands
    then plans without a function call per job and value), else a function
    of the run."""
    of = of or (lambda value: value)
    values = {of(getattr(job, key)) for job in JOBS.values()}
    if len(values) == 1:
        return values.pop()
    return lambda wildcards: of(getattr(JOBS[wildcards.run], key))


def archive_datasets(archive):
    """The prepared datasets an archive's runs trained on (pipeline.reproduce)."""
    from pipeline.reproduce import datasets

    return datasets(archive)


def folder_paths(name):
    """The folder, or the archives, a class-folder dataset of one's own is prepared from."""
    declared = FOLDER_DATASETS[name]
    return declared.get("archives") or [declared["folder"]]


def raw_files(wildcards):
    return [f"data/raw/{wildcards.dataset}/{f.name}" for f in get_dataset(wildcards.dataset).files]


def study_summary(study):
    return f"{RESULTS}/summary.json" if study == "main" else f"{RESULTS}/studies/{study}.json"


def incomplete_runs(summary):
    """The runs whose files are not all there (deleted, or lost to a failed job)
    while their summary is: a param of the summary's rule. Snakemake skips a
    missing intermediate file while what was made from it is up to date, so
    without this a plain rerun would keep a report citing runs that no longer
    exist. When the list changes, the summary and the report are made again,
    and the missing runs with them (and, the list empty again, the summary and
    the report once more on the next plain run)."""
    if not os.path.exists(f"{RESULTS}/{summary}.json"):
        return ""
    return " ".join(r for r in STUDY_RUNS[summary_study(summary)]
                    if not all(os.path.exists(f"{RESULTS}/{r}/{name}") for name in RUN_OUTPUTS))  # fmt: skip


def summary_study(summary):
    """The study whose summary is {RESULTS}/{summary}.json: "main" for Table I's."""
    return "main" if summary == "summary" else summary.removeprefix("studies/")


def report_inputs(wildcards):
    """The summaries the report renders, and the files its study views read."""
    inputs = {"summary": f"{RESULTS}/summary.json", "data": [f"data/{d}.h5" for d in DATASETS]}
    inputs["studies"] = [study_summary(s) for s in STUDY_RUNS if s != "main"]
    for name, study in STUDIES.items():
        if name in STUDY_RUNS:
            inputs.update({key: f"{RESULTS}/{path}" for key, path in study.INPUTS.items()})
    return inputs


def study_inputs(input):
    """--input NAME=PATH for each file a study view reads."""
    names = [name for study in STUDIES.values() for name in study.INPUTS]
    return " ".join(f"--input {name}={input[name]}" for name in names if name in input.keys())


wildcard_constraints:
    dataset="|".join(DATASET_REGISTRY),
    folder_dataset="|".join(FOLDER_DATASETS) or "(?!)",  # (?!): matches nothing
    # Every run id ends in seedN (pipeline/plan/jobs.py); JOBS says which exist.
    # A pattern, not an alternation of every id: that would cost the planning
    # of a large sweep a regular-expression match per id and job.
    run=r"(?:[^/]+/)+seed\d+",
    study="|".join(re.escape(s) for s in STUDY_RUNS if s != "main") or "none",
    summary="|".join(["summary", *(f"studies/{re.escape(s)}" for s in STUDY_RUNS if s != "main")]),
