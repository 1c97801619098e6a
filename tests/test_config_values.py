"""A config's values reach the jobs as written, and check-config and the
workflow accept and refuse the same configs (one validation, one reading)."""

import json
import shlex
import subprocess
import sys

import pytest
import yaml
from repo import REPO

# Strings YAML would read otherwise if a value were parsed a second time.
TRICKY = [
    "/m #x",
    "a: b",
    "'q'",
    '"dq"',
    "yes",
    "1",
    "ü ☃",
    "null",
    "[1, 2]",
    "{a: 1}",
    "0x10",
    "1e3",
    "~",
    "on",
    "- x",
    "&a",
    "*b",
    "!!str x",
    "%x",
    "2026-12-07",
]

BASE = {
    "studies": None,
    "experiments": [
        {
            "dataset": "mnist",
            "model": "mlp",
            "optimizer": "sgd",
            "losses": {"ce": {}},
            "epochs": 1,
            "batch_size": 50,
            "seeds": [1],
        }
    ],
}


def _dry_run(snakemake, workdir, config_path, *args):
    """A dry run printing its jobs' commands (`snakemake`: the conftest fixture)."""
    return snakemake(
        workdir, "-n", "-p", *args, "--", "reports/summary.html", config=config_path, timeout=120
    )


def _check_config(config_path):
    command = [sys.executable, "-m", "pipeline", "check-config", str(config_path)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=REPO)


def _jobs_config(stdout):
    """The config the report job is given (its --config-json), from a dry run's commands."""
    command = next(line for line in stdout.splitlines() if "pipeline report" in line)
    words = shlex.split(command)
    return json.loads(words[words.index("--config-json") + 1])


def test_tricky_strings_reach_the_jobs_as_written(tmp_path, snakemake):
    folder = tmp_path / "shapes #v2: x"
    (folder / "train" / "a").mkdir(parents=True)
    config = {**BASE, "mirrors": TRICKY, "datasets": {"shapes": {"folder": str(folder)}}}
    path = tmp_path / "tricky.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True))
    checked = _check_config(path)
    assert checked.returncode == 0, checked.stderr
    result = _dry_run(snakemake, tmp_path, path)
    assert result.returncode == 0, result.stderr[-2000:]
    jobs = _jobs_config(result.stdout)
    assert jobs["mirrors"] == TRICKY and jobs["datasets"] == {"shapes": {"folder": str(folder)}}


@pytest.mark.parametrize(
    "change, refused",
    [
        ({"seeds": ["1"]}, True),  # a number as a string
        ({"epochs": "12"}, True),
        ({"batch_size": "yes"}, True),
        ({"augment": "yes"}, True),  # the string, not YAML 1.1's boolean
        ({"augment": True}, False),
        ({"train_size": "1e3"}, True),
        ({"train_size": 40}, True),  # fewer examples than one batch of 50
    ],
)
def test_check_config_and_the_workflow_refuse_the_same_values(tmp_path, change, refused, snakemake):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({**BASE, "experiments": [{**BASE["experiments"][0], **change}]}))
    checked, dry = _check_config(path), _dry_run(snakemake, tmp_path, path)
    assert (checked.returncode != 0, dry.returncode != 0) == (refused, refused), (
        checked.stderr,
        dry.stderr[-2000:],
    )
    if refused and change != {"train_size": 40}:
        key = next(iter(change))
        assert f"experiments/0/{key}" in checked.stderr and f"experiments/0/{key}" in dry.stderr
    if change == {"train_size": 40}:
        message = "batch_size 50 is more than the 40 training examples of mnist (for full-batch training give batch_size 40)"
        assert message in checked.stderr and message in dry.stderr
        assert "Traceback" not in dry.stderr


def test_a_bad_command_line_value_is_one_line(tmp_path, snakemake):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(BASE))
    result = _dry_run(snakemake, tmp_path, path, "--config", "stage={max_epochs: [1}")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "config error: stage" in result.stderr


def test_a_stage_of_seeds_the_config_lacks_is_refused_before_any_job(tmp_path, snakemake):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({**BASE, "stage": {"seeds": [3]}}))
    for result in (_check_config(path), _dry_run(snakemake, tmp_path, path)):
        assert result.returncode != 0 and "Traceback" not in result.stderr
        assert "stage/seeds: no run of this config has seed 3 (its seeds: 1)" in result.stderr


def test_check_config_and_fetch_work_from_any_directory(tmp_path):
    """The checkout's default config, schema and vendored MNIST are found from the package, not the working directory."""
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(BASE))
    checked = subprocess.run(
        [sys.executable, "-m", "pipeline", "check-config", str(path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert checked.returncode == 0, checked.stderr
    fetched = subprocess.run(
        [sys.executable, "-m", "pipeline", "fetch", "mnist", "--out", "raw", "--quiet"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert fetched.returncode == 0, fetched.stderr  # no network: only the vendored copy can serve it
    vendored = sorted(p.name for p in (REPO / "data/raw/vendored/mnist").glob("*.gz"))
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == vendored


TEN_CLASSES_ONLY = """import autograd.numpy as np


def ten(logits, labels):
    z = logits - np.log(np.sum(np.exp(logits), axis=1, keepdims=True))
    return -np.mean(np.sum(z * np.eye(10)[labels], axis=1))
"""


def _shapes(root, classes=("ring", "stripe", "dot"), empty=()):
    from PIL import Image

    for split in ("train", "test"):
        for name in classes:
            (root / split / name).mkdir(parents=True, exist_ok=True)
            if (split, name) in empty:
                continue
            for i in range(2):
                Image.new("L", (4, 4), 40 * i).save(root / split / name / f"{i}.png")
    return root


@pytest.mark.parametrize(
    "case, message",
    [
        ("a loss for ten classes", "ten.py: loss 'ten': fails on a probe batch of 50 x 3 logits"),
        ("one class", "datasets/shapes: {folder}: one class (ring): a classifier needs two or more"),
        ("an emptied training class", "datasets/shapes: {folder}: class 'stripe' has no images in train/"),
    ],
)
def test_what_fails_in_training_is_refused_before_any_job_naming_its_file(tmp_path, case, message, snakemake):
    folder = _shapes(
        tmp_path / "shapes",
        classes=("ring",) if case == "one class" else ("ring", "stripe", "dot"),
        empty={("train", "stripe")} if case == "an emptied training class" else (),
    )
    (tmp_path / "ten.py").write_text(TEN_CLASSES_ONLY)
    experiment = {**BASE["experiments"][0], "dataset": "shapes", "losses": {"ten": {}, "ce": {}}}
    config = {
        **BASE,
        "experiments": [experiment],
        "datasets": {"shapes": {"folder": str(folder)}},
        "user_losses": {"ten": {"file": str(tmp_path / "ten.py")}},
    }
    if case != "a loss for ten classes":
        experiment["losses"] = {"ce": {}}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    for result in (_check_config(path), _dry_run(snakemake, tmp_path, path)):
        assert result.returncode != 0 and "Traceback" not in result.stderr
        assert message.format(folder=folder) in result.stderr, result.stderr[-2000:]
