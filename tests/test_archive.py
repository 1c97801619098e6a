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
        with pytest.raises(DataError, match="Table I shows 99.9 for mnist/mnist_cnn/nllr_keras"):
            verify(edited)
    finally:
        os.chdir(cwd)
