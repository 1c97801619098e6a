"""Archives (pipeline.report.archive): what they hold, and verify-archive
catching a changed member or a Table I that no longer matches its runs."""

import json
import os

import numpy as np
import pytest

from pipeline.common.errors import DataError
from pipeline.report.archive import build, read, verify


def test_archive_checks_the_embedded_table_one(rendered, tmp_path, report_runs, monkeypatch):
    tmp, summary, html = rendered
    for run in report_runs:  # the run files the archive takes
        run_dir = tmp / run["run_dir"]
        run_dir.mkdir(parents=True, exist_ok=True)
        for name in ("history.csv", "status.json"):
            (run_dir / name).write_text("{}")
        (run_dir / "metrics.json").write_text(json.dumps({"test_accuracy": run["test_accuracy"]}))

    monkeypatch.chdir(tmp)
    (tmp / "results").mkdir(exist_ok=True)
    (tmp / "results" / "summary.json").write_text(summary.read_text())
    good = build(tmp_path / "good.tar.gz", ["results/summary.json"], "summary.html", {})
    assert verify(good) > 0
    for cut in (1, 8, 20):  # only the gzip trailer (CRC, length) is missing
        cut_off = tmp_path / f"cut{cut}.tar.gz"
        cut_off.write_bytes(good.read_bytes()[:-cut])
        with pytest.raises(DataError, match="truncated or corrupt"):
            verify(cut_off)
    (tmp / "summary.html").write_text(html.replace('"mean": 98.485', '"mean": 99.9'))
    edited = build(tmp_path / "edited.tar.gz", ["results/summary.json"], "summary.html", {})
    with pytest.raises(DataError, match="Table I's data shows 99.9 for mnist/mnist_cnn/nllr_keras"):
        verify(edited)
    # The number a reader sees, its JSON left alone: caught too.
    assert ">98.48\n" in html
    (tmp / "summary.html").write_text(html.replace(">98.48\n", ">99.90\n"))
    shown = build(tmp_path / "shown.tar.gz", ["results/summary.json"], "summary.html", {})
    with pytest.raises(
        DataError, match="Table I shows 99.90 for mnist/mnist_cnn/nllr_keras, the results give 98.48"
    ):
        verify(shown)


def test_an_archive_extracts_into_one_folder_of_its_own_name(rendered, tmp_path, report_runs, monkeypatch):
    import tarfile

    tmp, summary, _ = rendered
    monkeypatch.chdir(tmp)
    (tmp / "results").mkdir(exist_ok=True)
    (tmp / "results" / "summary.json").write_text(summary.read_text())
    for run in report_runs:
        (tmp / run["run_dir"]).mkdir(parents=True, exist_ok=True)
        for name in ("history.csv", "status.json", "metrics.json"):
            (tmp / run["run_dir"] / name).write_text(json.dumps({"test_accuracy": run["test_accuracy"]}))
    archive = build(
        tmp_path / "softloss-archive-20261203-abc.tar.gz", ["results/summary.json"], "summary.html", {}
    )
    with tarfile.open(archive) as tar:
        assert {name.split("/")[0] for name in tar.getnames()} == {"softloss-archive-20261203-abc"}
        tar.extractall(tmp_path / "out", filter="data")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["softloss-archive-20261203-abc"]


def test_an_unsafe_member_names_the_archive(tmp_path):
    import io
    import tarfile

    hostile = tmp_path / "hostile.tar.gz"
    with tarfile.open(hostile, "w:gz") as tar:
        info = tarfile.TarInfo("../escape.txt")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(DataError, match=rf"^{hostile}: unsafe member '../escape.txt'"):
        verify(hostile)


def _run_dir(root, loss, status, epochs, reached, accuracy=0.9):
    """A run directory as train and evaluate leave it: `reached` epochs of history."""
    from pipeline.common.files import write_json
    from pipeline.runs.rundir import write_history

    config = {"data": "data/mnist.h5", "model": "mnist_cnn", "loss": loss, "seed": 1, "epochs": epochs}
    run_dir = root / "results" / "mnist" / "mnist_cnn" / loss / "seed1"
    run_dir.mkdir(parents=True)
    write_history(
        run_dir / "history.csv",
        [
            {
                "epoch": e,
                "train_loss": 1.0 / e,
                "test_loss": 1.0 / e,
                "test_accuracy": accuracy,
                "seconds": 1.0,
            }
            for e in range(1, reached + 1)
        ],
    )
    state = {
        "status": status,
        "epoch": reached,
        "config": config,
        "wall_seconds": float(reached),
        "commit": "abc",
    }
    write_json(run_dir / "status.json", state)
    if status != "running":
        write_json(
            run_dir / "metrics.json",
            {
                **state,
                "test_accuracy": accuracy,
                "ece": 0.01,
                "confusion_matrix": (np.eye(10, dtype=int) * 10).tolist(),
            },
        )
    return run_dir.relative_to(root)


def test_a_snapshot_of_a_study_in_progress_reports_and_archives_its_running_runs(tmp_path, monkeypatch):
    import tarfile

    from pipeline.common.errors import SoftlossError
    from pipeline.report.aggregate import aggregate
    from pipeline.report.render import render

    done, running = (
        _run_dir(tmp_path, "ce", "completed", 3, 3, 0.95),
        _run_dir(tmp_path, "nllr_keras", "running", 5, 2),
    )
    monkeypatch.chdir(tmp_path)
    with pytest.raises(
        SoftlossError, match=rf"^{running}: still training: epoch 2 of 5 \(aggregate --in-progress"
    ):
        aggregate([done, running], "results/summary.json")
    assert not os.path.exists("results/summary.json")
    runs = aggregate([done, running], "results/summary.json", in_progress=True)
    assert [r["status"] for r in runs] == ["completed", "running"] and len(runs[1]["history"]) == 2
    html = render("results/summary.json", [], {}, "summary.html").read_text()
    assert "A snapshot of a study in progress: 1 of the 2 runs are" in html
    assert ">no result (1 still training, at epoch 2 of 5)</td>" in html
    archive = build(tmp_path / "snapshot.tar.gz", ["results/summary.json"], "summary.html", {})
    assert verify(archive) > 0
    with tarfile.open(archive) as tar:
        names = {name.split("/", 1)[1] for name in tar.getnames()}
    assert f"{running}/history.csv" in names and f"{running}/metrics.json" not in names
    assert f"{done}/metrics.json" in names
    # A summary that calls a run running while its status.json says otherwise is caught.
    state = json.loads((tmp_path / running / "status.json").read_text())
    (tmp_path / running / "status.json").write_text(json.dumps({**state, "status": "completed"}))
    with pytest.raises(
        DataError, match=f"results/summary.json says {running} is running, its status.json does not"
    ):
        verify(build(tmp_path / "lying.tar.gz", ["results/summary.json"], "summary.html", {}))


def test_a_snapshot_archives_a_study_as_it_stands_and_leaves_its_files_alone(tmp_path, capsys, monkeypatch):
    import tarfile

    from pipeline.cli import main

    done, running = (
        _run_dir(tmp_path, "ce", "completed", 3, 3, 0.95),
        _run_dir(tmp_path, "nllr_keras", "running", 5, 2),
    )
    waiting = "results/mnist/mnist_cnn/bce/seed1"  # planned, not started
    first = tmp_path / "results/mnist/mnist_cnn/nllr/seed1"  # in its first epoch: a status, no history yet
    first.mkdir(parents=True)
    (first / "status.json").write_text(json.dumps({"status": "running", "epoch": 0}))
    monkeypatch.chdir(tmp_path)
    assert main(["snapshot", "--runs", waiting, "--out", "none.tar.gz"]) == 2
    assert "none of the 1 runs has started" in capsys.readouterr().err and not os.path.exists("none.tar.gz")
    before = sorted(p for p in tmp_path.rglob("*"))
    out = tmp_path / "snap.tar.gz"
    assert (
        main(
            [
                "snapshot",
                "--runs",
                str(done),
                str(running),
                waiting,
                str(first),
                "--config-json",
                '{"seed": 1}',
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert capsys.readouterr().out.strip() == f"{out}: 2 runs (1 still training), 2 not started"
    assert sorted(p for p in tmp_path.rglob("*") if p != out) == before  # no summary, no report written
    assert verify(out) > 0
    with tarfile.open(out) as tar:
        names = {name.split("/", 1)[1] for name in tar.getnames()}
    assert {
        "results/summary.json",
        "reports/summary.html",
        f"{running}/history.csv",
        f"{done}/metrics.json",
    } <= names
    assert f"{running}/metrics.json" not in names and not any(waiting in name for name in names)
    html = read(out)["reports/summary.html"].decode()
    assert (
        f"2 runs of the\nstudy have not started and are in no table:\n<code>{waiting}</code>, <code>{first}</code>."
        in html
    )
