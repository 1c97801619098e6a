"""`render`: a summary JSON (pipeline.report.aggregate) -> one self-contained
HTML file: Table I, the losses at equal epochs, learning curves and confusion
matrices, the side studies' sections and the provenance."""

from __future__ import annotations

import base64
import csv
import html as html_lib
import io
import json
import re
from pathlib import Path

import jinja2

from ..common.files import write_atomic
from ..common.lossnames import loss_order
from . import equal_epochs, why
from .aggregate import read_runs
from .figures import confusion_figure, learning_curves
from .provenance import provenance
from .tables import (
    NOT_RESULTS,
    PAPER_CITATION,
    TABLE1_JSON,
    TABLE1_JSON_ID,
    form_findings,
    form_table,
    interval_text,
    rankings,
    table1_json,
    table_rows,
)


def _environment():
    """The report's templates, and each side study's under studies/."""
    loader = jinja2.ChoiceLoader(
        [
            jinja2.PackageLoader("pipeline.report", "templates"),
            jinja2.PrefixLoader({"studies": jinja2.PackageLoader("pipeline.studies", "templates")}),
        ]
    )
    return jinja2.Environment(loader=loader, autoescape=True, undefined=jinja2.StrictUndefined)


def _data_facts(datasets, shown):
    """({dataset: how it differs from what the paper used}, {copy: original})
    from the prepared files' own records, for the datasets in `shown`."""
    notes = {d["dataset"]: d["note"] for d in datasets if d["note"] and d["dataset"] in shown}
    variants = {d["dataset"]: d["variant_of"] for d in datasets if d["variant_of"]}
    return dict(sorted(notes.items())), variants


def _table_one(runs, sources):
    """Table I's rows, its entries by form, the findings, and Beyond the paper."""
    notes, variants = _data_facts(sources["datasets"], {r["dataset"] for r in runs})
    rows = table_rows(runs, variants)
    entries = form_table(rows, variants)
    return {
        "rows": rows,
        "entries": entries,
        "findings": form_findings(entries, runs),
        "notes": notes,
        "table1_json": table1_json(rows),
        "table1_json_id": TABLE1_JSON_ID,
        "rankings": rankings(rows),
    }


def _curves_and_findings(runs):
    """Per dataset and model: the learning curves, confusion matrices, the
    losses at equal epochs and why they differ."""
    sections = [
        {
            "dataset": d,
            "model": m,
            "curves": learning_curves(runs, d, m),
            "confusion": confusion_figure(runs, d, m),
        }
        for d, m in sorted({(r["dataset"], r["model"]) for r in runs})
    ]
    by_epoch = equal_epochs.tables(runs, order=lambda losses: sorted(losses, key=loss_order))
    for table in by_epoch:
        table["findings"] = equal_epochs.findings(table)
    return {
        "sections": sections,
        "equal_epochs": by_epoch,
        "window": equal_epochs.WINDOW,
        "span": equal_epochs.SPAN,
        "flat": equal_epochs.FLAT,
        "trend_state": equal_epochs.trend_state,
        "why": why.sections(runs),
    }


def render(
    summary_path, data_files, config, out_path, study_paths=(), inputs=None, studies=None, not_started=()
):
    """Render the report of the Table I runs in `summary_path` and of the side
    studies whose summaries are `study_paths` (named by their file's stem),
    each drawn by its module in `studies` ({name: module}, pipeline.studies);
    `inputs` are the files beside the runs that study views read ({name: path});
    `not_started`: the run directories a snapshot leaves out, not begun yet."""
    runs = read_runs(summary_path)
    study_runs = {Path(p).stem: read_runs(p) for p in study_paths}
    settings = config.get("studies") or {}
    views = {
        name: study.view(study_runs[name], settings.get(name, {}), inputs or {})
        for name, study in (studies or {}).items()
        if name in study_runs
    }
    sources = provenance(data_files, config, runs + [r for rs in study_runs.values() for r in rs])
    context = _table_one(runs, sources) | _curves_and_findings(runs)
    html = (
        _environment()
        .get_template("summary.html.j2")
        .render(
            **context,
            paper=PAPER_CITATION,
            not_results=[r for r in runs if r["status"] in NOT_RESULTS],
            n_runs=len(runs),
            not_started=list(not_started),
            running=sum(r["status"] == "running" for r in runs),
            provenance=sources,
            studies=views,
            interval=interval_text,
        )
    )
    write_atomic(out_path, lambda out: out.write(html.encode("utf-8")))
    return Path(out_path)


_FIGURE = re.compile(r'<img alt="([^"]+)" src="data:image/png;base64,([^"]+)">')


def write_figures(report_path, folder):
    """The figures of the report at `report_path` as PNG files named by their
    captions, and its Table I as CSV, into `folder`: what `snakemake --report`
    shows beside the runtimes. Returns the files written."""
    html, folder = Path(report_path).read_text(), Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for caption, data in _FIGURE.findall(html):
        name = re.sub(r"[^a-z0-9]+", "_", html_lib.unescape(caption).lower()).strip("_") + ".png"
        write_atomic(folder / name, lambda out, data=data: out.write(base64.b64decode(data)))
        written.append(folder / name)
    rows = json.loads(TABLE1_JSON.search(html).group(1))
    text = io.StringIO()
    writer = csv.DictWriter(
        text, ["dataset", "model", "loss", "mean", "half", "n", "total"], lineterminator="\n"
    )
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(folder / "table_1.csv", lambda out: out.write(text.getvalue().encode()))
    return [*written, folder / "table_1.csv"]
