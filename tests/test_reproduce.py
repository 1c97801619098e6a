"""`reproduce` (pipeline.reproduce): an archive's runs retrained from its own
record, identical here, and the first differing epoch and the fact that
differs when a setting that moves the numbers is changed."""

import shutil
import subprocess
import sys

import pytest
from repo import args

from pipeline.common.errors import DataError
from pipeline.report.aggregate import aggregate
from pipeline.report.archive import build
from pipeline.report.render import render
from pipeline.reproduce import reproduce
from pipeline.runs.config import RunConfig
from pipeline.runs.evaluate import evaluate
from pipeline.runs.train import run


@pytest.fixture(scope="module")
def conv_archive(mnist_h5, tmp_path_factory):
    """Two mnist_cnn runs of two epochs on 256 images, archived: the convolution
    whose algorithm (Winograd or direct) is a setting that moves the numbers."""
    where = tmp_path_factory.mktemp("conv")
    data = where / "mnist.h5"
    shutil.copy(mnist_h5, data)
    run_dirs = []
    for loss in ("ce", "nllr_keras"):
        config = RunConfig(
            data=str(data),
            model="mnist_cnn",
            loss=loss,
            optimizer="adadelta",
            epochs=2,
            batch_size=64,
            seed=1,
            train_size=256,
            test_size=200,
        )
        run_dir = where / "results" / loss
        run(config, run_dir, quiet=True, log=lambda *a: None)
        evaluate(run_dir, data, run_dir / "metrics.json")
        run_dirs.append(run_dir)
    aggregate(run_dirs, where / "summary.json")
    render(where / "summary.json", [data], {}, where / "summary.html")
    names = {where / "summary.json": "results/summary.json", where / "summary.html": "reports/summary.html"}
    return build(
        where / "archive.tar.gz", [where / "summary.json"], where / "summary.html", {}, [data], names
    ), data


def test_an_archive_reproduces_here_and_a_changed_setting_shows_where_and_why(conv_archive):
    archive, _ = conv_archive
    lines = []
    results = reproduce(archive, log=lines.append)
    assert [(same, line) for _, same, line in results] == [(True, "identical through epoch 2")] * 2, lines
    (result,) = reproduce(
        archive, ["ce"], epochs=1, overrides={"convolution": "direct"}, log=lambda line: None
    )
    assert not result[1] and result[2].startswith("first differs at epoch 1: ")
    assert result[2].endswith("recorded facts that differ here: convolution auto -> direct")


def test_data_other_than_the_archives_is_refused(conv_archive, tmp_path):
    archive, data = conv_archive
    with pytest.raises(DataError, match="no such dataset file"):
        reproduce(archive, ["ce"], epochs=1, data_dir=tmp_path)
    other = tmp_path / "mnist.h5"
    shutil.copy(data, other)
    import h5py

    with h5py.File(other, "a") as h5:
        h5.attrs["source_sha256"] = ["0" * 64] * len(h5.attrs["source_sha256"])
    with pytest.raises(DataError, match="not the data of the archive"):
        reproduce(archive, ["ce"], epochs=1, data_dir=tmp_path)


def test_the_command_says_each_run_and_checks(conv_archive, tmp_path):
    archive, _ = conv_archive
    out = tmp_path / "reproduced.txt"
    result = subprocess.run(
        args(
            "{python} -m pipeline reproduce {archive} nllr_keras --epochs 1 --setting convolution=direct "
            "--check --out {out}",
            python=sys.executable,
            archive=archive,
            out=out,
        ),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1 and "nllr_keras: first differs at epoch 1" in result.stdout
    assert out.read_text() == result.stdout
    assert result.stderr == ""
