"""A snapshot of a study still training: the Table I runs that have started,
as they stand (a run still training at the epoch it reached, left out of every
mean), reported and archived without weights while the study goes on.

Only the archive is written: the summary and report it holds are made in a
temporary folder, so the study's own `results/summary.json` and report, which
the workflow makes when the runs are done, are never touched.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from ..common.errors import SoftlossError
from .aggregate import aggregate
from .archive import build, verify
from .render import render


def snapshot(run_dirs, data_files, config, out_path):
    """Archive the started runs among `run_dirs` to `out_path`; returns
    (the runs as aggregated, how many have not started). A run still in its
    first epoch has nothing to show yet: it counts as not started."""
    started = [Path(d) for d in run_dirs if (Path(d) / "history.csv").exists()]
    if not started:
        raise SoftlossError(f"none of the {len(run_dirs)} runs has started: nothing to snapshot yet")
    waiting = [str(d) for d in run_dirs if Path(d) not in started]
    with tempfile.TemporaryDirectory() as tmp:
        summary, report = Path(tmp, "summary.json"), Path(tmp, "summary.html")
        runs = aggregate(started, summary, in_progress=True)
        render(summary, data_files, config, report, not_started=waiting)
        build(
            out_path,
            [summary],
            report,
            config,
            data_files,
            names={summary: "results/summary.json", report: "reports/summary.html"},
        )
    verify(out_path)
    return runs, len(waiting)
