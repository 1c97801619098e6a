"""A result belongs to exactly the data and the config that made it: changed
data retrains, through the trainer and through the workflow, and configs run in
one checkout never touch each other's runs."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import yaml
from PIL import Image
from repo import REPO, TINY

from pipeline.datasets import hdf5, registry
from pipeline.runs.config import RunConfig
from pipeline.runs.rundir import read_history
from pipeline.runs.train import run

CLASSES = ("ring", "stripe", "dot")


def _folder(root, seed):
    """Three classes of 8x8 grayscale PNGs, 6 training and 3 test images each."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", 6), ("test", 3)):
        for c, name in enumerate(CLASSES):
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                pixels = np.clip(rng.normal(60 + 70 * c, 20, (8, 8)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(root / split / name / f"{i}.png")
    return root


def _config(folder):
    return {
        "studies": None,
        "datasets": {"shapes": {"folder": str(folder)}},
        "experiments": [
            {
                "dataset": "shapes",
                "model": "mlp",
                "model_options": {"hidden": 8},
                "optimizer": "sgd",
                "hyperparameters": {"lr": 0.1},
                "losses": {"ce": {}},
                "epochs": 2,
                "batch_size": 6,
                "seeds": [1],
            }
        ],
    }


def _snakemake(snakemake, workdir, config):
    """The study of `config` (a mapping) to its report, one core, in `workdir`."""
    (workdir / "c.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(workdir, "--cores", "1", "--", "reports/summary.html", config="c.yaml")
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def _run_dir(workdir):
    (status,) = workdir.glob("results/**/shapes/mlp/ce/seed1/status.json")
    return status.parent


def _metrics(run_dir):
    """Every epoch's numbers but its seconds."""
    return [
        {k: v for k, v in row.items() if "seconds" not in k} for row in read_history(run_dir / "history.csv")
    ]


def _train_log(workdir):
    (log,) = workdir.glob("logs/**/train/**/shapes/mlp/ce/seed1.log")
    return log.read_text()


def test_a_folder_edited_or_swapped_retrains_its_runs_from_scratch(tmp_path, snakemake):
    workdir = tmp_path / "work"
    workdir.mkdir()
    first = _folder(tmp_path / "first", seed=0)
    _snakemake(snakemake, workdir, _config(first))
    trained = json.loads((_run_dir(workdir) / "status.json").read_text())

    # An image edited inside the folder: the folder's own time does not change.
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(first / "train" / "dot" / "0.png")
    _snakemake(snakemake, workdir, _config(first))
    edited = json.loads((_run_dir(workdir) / "status.json").read_text())
    assert edited["data_sha256"] != trained["data_sha256"]
    assert "starting afresh" in _train_log(workdir) and "resuming" not in _train_log(workdir)
    assert edited["data_sha256"] == hdf5.recorded_digest(workdir / "data" / "shapes.h5")

    # The config pointed at another folder: retrained too, and equal to a run made there from scratch.
    second = _folder(tmp_path / "second", seed=1)
    _snakemake(snakemake, workdir, _config(second))
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    _snakemake(snakemake, fresh, _config(second))
    assert _metrics(_run_dir(workdir)) == _metrics(_run_dir(fresh))


def test_the_trainer_never_resumes_or_keeps_a_run_of_other_data(mnist_h5, tmp_path):
    data = tmp_path / "mnist.h5"
    shutil.copy(mnist_h5, data)
    config = RunConfig(
        data=str(data),
        model="knet_softmax",
        loss="ce",
        optimizer="sgd",
        epochs=1,
        batch_size=500,
        seed=1,
        hyperparameters={"lr": 0.1},
        train_size=1000,
        test_size=200,
    )
    out = tmp_path / "run"
    before = run(config, out, quiet=True, log=lambda *a: None)
    splits = {split: hdf5.load(data, split) for split in hdf5.SPLITS}
    splits["train"][1][:500] = (splits["train"][1][:500] + 1) % 10  # other labels, the same file name
    hdf5.write(data, registry.get("mnist"), splits, {"made here": "-"})
    lines = []
    after = run(config, out, quiet=True, log=lines.append)  # a finished run of other data: trained again
    assert any("trained on other data" in line for line in lines)
    assert after["data_sha256"] != before["data_sha256"] and after["status"] == "completed"
    (out / "status.json").unlink()  # as Snakemake reruns a job: only the checkpoint is left
    lines = []
    hdf5.write(
        data, registry.get("mnist"), {s: hdf5.load(mnist_h5, s) for s in hdf5.SPLITS}, {"made here": "-"}
    )
    run(config, out, quiet=True, log=lines.append)
    assert any("written for other data" in line for line in lines)


@pytest.mark.parametrize("changed", ["images", "labels", "classes"])
def test_the_content_digest_sees_every_part_of_the_data(changed):
    rng = np.random.default_rng(0)
    splits = {s: (rng.integers(0, 256, (4, 2, 2, 1), dtype=np.uint8), np.arange(4) % 2) for s in hdf5.SPLITS}
    digest = hdf5.content_digest(splits, ["a", "b"])
    images, labels = splits["test"]
    if changed == "images":
        splits["test"] = (images ^ np.uint8(1), labels)
    elif changed == "labels":
        splits["test"] = (images, 1 - labels)
    assert hdf5.content_digest(splits, ["a", "c"] if changed == "classes" else ["a", "b"]) != digest
    assert hdf5.content_digest(splits, ["a", "b"]) == hdf5.content_digest(
        {s: (i, y.astype(np.uint16)) for s, (i, y) in splits.items()}, ["a", "b"]
    )  # the labels' integer type is not content


def _run_config(snakemake, workdir, config_file):
    """The study of `config_file` to its report, two cores, in `workdir`: what it printed."""
    result = snakemake(workdir, "--cores", "2", "--", "reports/summary.html", config=config_file)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout + result.stderr


def _runs(workdir):
    return {
        p.parent.relative_to(workdir / "results").as_posix(): p.read_bytes()
        for p in (workdir / "results").rglob("metrics.json")
    }


def test_two_configs_in_one_checkout_keep_their_own_runs(tmp_path, snakemake):
    """The test config, another config whose runs have the same datasets, models,
    losses and seeds, then the test config again: it trains nothing."""
    other = tmp_path / "other.yaml"  # named by its file: results/other/
    other.write_text(TINY.replace("name: test", "").replace("lr: 0.1", "lr: 0.05"))
    workdir = tmp_path / "work"
    workdir.mkdir()
    _run_config(snakemake, workdir, REPO / ".test" / "config" / "config.yaml")
    _run_config(snakemake, workdir, other)
    both = _runs(workdir)
    assert sorted({run.split("/")[0] for run in both}) == ["other", "test"] and len(both) == 8
    third = _run_config(snakemake, workdir, REPO / ".test" / "config" / "config.yaml")
    assert "rule train:" not in third and _runs(workdir) == both
    assert (
        "test/mnist/mlp/ce/seed1" in (workdir / "reports" / "summary.html").read_text()
    )  # the last config's report
    assert "other/mnist" in (workdir / "reports" / "other" / "summary.html").read_text()


def test_runs_of_the_old_layout_move_into_their_configs_folder_with_one_command(tmp_path, snakemake):
    workdir = tmp_path / "work"
    workdir.mkdir()
    config = REPO / ".test" / "config" / "config.yaml"
    _run_config(snakemake, workdir, config)
    before = _runs(workdir)
    # The layout before each config had its folder: results/RUN and results/summary.json.
    for path in sorted((workdir / "results" / "test").iterdir()):
        path.rename(workdir / "results" / path.name)
    (workdir / "results" / "test").rmdir()
    moved = subprocess.run(
        [sys.executable, "-m", "pipeline", "move-results", str(config)],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert moved.returncode == 0 and "4 run(s) moved to results/test/" in moved.stdout, moved.stderr
    assert _runs(workdir) == before and sorted(p.name for p in (workdir / "results").iterdir()) == ["test"]
    assert "rule train:" not in _run_config(snakemake, workdir, config)
