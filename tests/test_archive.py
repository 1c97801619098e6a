"""Archives (pipeline.report.archive): what they hold, and verify-archive
catching a changed member or a Table I that no longer matches its runs."""
import json
import os

import pytest
from test_report import RUNS, rendered  # noqa: F401 (rendered: the report fixture)

from pipeline.common.errors import DataError
from pipeline.report.archive import build, verify


def test_archive_checks_the_embedded_table_one(rendered, tmp_path):  # noqa: F811 (a fixture)
    tmp, summary, html = rendered
    for run in RUNS:  # the run files the archive takes
        run_dir = tmp / run["run_dir"]
        run_dir.mkdir(parents=True, exist_ok=True)
        for name in ("history.csv", "status.json"):
            (run_dir / name).write_text("{}")
        (run_dir / "metrics.json").write_text(json.dumps({"test_accuracy": run["test_accuracy"]}))

    cwd = os.getcwd()
    os.chdir(tmp)
    try:
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
        with pytest.raises(DataError, match="Table I shows 99.90 for mnist/mnist_cnn/nllr_keras, the results give 98.48"):
            verify(shown)
    finally:
        os.chdir(cwd)


def test_an_archive_extracts_into_one_folder_of_its_own_name(rendered, tmp_path):  # noqa: F811 (a fixture)
    import tarfile

    tmp, summary, _ = rendered
    cwd = os.getcwd()
    os.chdir(tmp)
    try:
        (tmp / "results").mkdir(exist_ok=True)
        (tmp / "results" / "summary.json").write_text(summary.read_text())
        for run in RUNS:
            (tmp / run["run_dir"]).mkdir(parents=True, exist_ok=True)
            for name in ("history.csv", "status.json", "metrics.json"):
                (tmp / run["run_dir"] / name).write_text(json.dumps({"test_accuracy": run["test_accuracy"]}))
        archive = build(tmp_path / "softloss-archive-20261203-abc.tar.gz", ["results/summary.json"], "summary.html", {})
    finally:
        os.chdir(cwd)
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
