"""The report's Table I with the form axis, rendered from runs made up here."""
import json
import re
from html.parser import HTMLParser

import numpy as np
import pytest

from pipeline.common.errors import DataError
from pipeline.common.lossnames import nllr_keras_floor
from pipeline.report.archive import build, verify
from pipeline.report.render import render
from pipeline.report.tables import form_findings, form_table, paper_value, table_rows

REPO_README = __import__("pathlib").Path(__file__).resolve().parents[1] / "README.md"


def _run(loss, seed, accuracy, losses, status="completed"):
    history = [{"epoch": e + 1, "train_loss": v, "train_accuracy": accuracy, "train_error": 1 - accuracy,
                "test_loss": v, "test_accuracy": accuracy, "test_error": 1 - accuracy, "seconds": 1.0}
               for e, v in enumerate(losses)]  # fmt: skip
    confusion = np.eye(10, dtype=int) * 100
    return {"run_dir": f"results/mnist/mnist_cnn/{loss}/seed{seed}", "dataset": "mnist", "model": "mnist_cnn",
            "loss": loss, "seed": seed, "status": status, "test_accuracy": accuracy, "ece": 0.01,
            "confusion_matrix": confusion.tolist(), "config": {"epochs": len(losses)}, "history": history,
            "wall_seconds": 1.0, "epoch": len(losses), "reason": "non-finite loss" if status == "diverged" else None}  # fmt: skip


RUNS = [
    _run("ce", 1, 0.9901, [0.2, 0.05]), _run("ce", 2, 0.9903, [0.2, 0.04]),
    _run("ce_keras", 1, 0.9902, [0.2, 0.05]), _run("ce_keras", 2, 0.9900, [0.2, 0.05]),
    _run("nllr", 1, 0.6062, [-1e10, -1.5e30]), _run("nllr", 2, 0.11, [-1e10, -1e31], status="diverged"),
    _run("nllr_keras", 1, 0.9847, [-13.0, -13.46]), _run("nllr_keras", 2, 0.9850, [-13.1, -13.5]),
]  # fmt: skip


class _Cells(HTMLParser):
    """Table I's measured cells: {(row loss, form): (cell loss, data-mean)}."""

    def __init__(self):
        super().__init__()
        self.cells, self._row, self._table = {}, None, None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self._table = attrs.get("id")
        if self._table == "table1" and tag == "tr" and "data-loss" in attrs:
            self._row = attrs["data-loss"]
        if self._table == "table1" and tag == "td" and "data-form" in attrs:
            self.cells[(self._row, attrs["data-form"])] = (attrs["data-loss"], attrs["data-mean"])


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    summary = tmp / "summary.json"
    summary.write_text(json.dumps({"runs": RUNS}))
    out = render(summary, [], {"experiments": []}, tmp / "summary.html")
    return tmp, summary, out.read_text()


def test_table_one_shows_both_forms_side_by_side(rendered):
    _, _, html = rendered
    parser = _Cells()
    parser.feed(html)
    assert set(parser.cells) == {("ce", "exact"), ("ce", "keras"), ("nllr", "exact"), ("nllr", "keras")}
    assert parser.cells[("nllr", "keras")] == ("nllr_keras", "%.12g" % (100 * (0.9847 + 0.9850) / 2))
    assert parser.cells[("nllr", "exact")] == ("nllr", "%.12g" % 60.62)  # the completed seed only
    assert parser.cells[("ce", "exact")][0] == "ce" and parser.cells[("ce", "keras")][0] == "ce_keras"
    row = re.search(r'<tr data-dataset="mnist" data-model="mnist_cnn" data-loss="nllr">(.*?)</tr>', html, re.S).group(1)
    assert "99.28" in row and "1 diverged" in row  # the paper's value beside both forms


def test_findings_state_the_numbers_and_the_floor():
    entries = form_table(table_rows(RUNS))
    text = " ".join(form_findings(entries, RUNS))
    floor = nllr_keras_floor(10)
    assert f"floor of {floor:.2f}" in text and f"{-13.48 - floor:.2f} above" in text
    assert "-1.5e+30" in text and "1 of its 2 runs diverged" in text
    assert "exact form 60.62 % (one seed)" in text and "the paper reports 99.28 %" in text
    # the difference on the seed both NLLR forms completed, not over seed 2 too, where the exact form diverged
    assert f"Keras minus exact, on seed 1 (completed in both forms): {98.47 - 60.62:+.2f} points" in text
    assert f"Keras minus exact: {(99.02 + 99.00) / 2 - (99.01 + 99.03) / 2:+.2f} points" in text  # CE: both seeds in both


def test_paper_is_named_in_report_and_readme(rendered):
    _, _, html = rendered
    for document in (html, REPO_README.read_text()):
        document = " ".join(document.split())  # lines wrapped anywhere
        assert "arXiv:1804.10690" in document
        assert "Negative Log Likelihood Ratio Loss for Deep Neural Network Classification" in document
    assert not re.search(r'(src|href)="https?://(?!arxiv\.org/abs/1804\.10690")', html)  # no outside resources


def test_archive_checks_the_embedded_table_one(rendered, tmp_path):
    tmp, summary, html = rendered
    for run in RUNS:  # the run files the archive takes
        run_dir = tmp / run["run_dir"]
        run_dir.mkdir(parents=True, exist_ok=True)
        for name in ("history.csv", "status.json"):
            (run_dir / name).write_text("{}")
        (run_dir / "metrics.json").write_text(json.dumps({"test_accuracy": run["test_accuracy"]}))
    import os

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


def test_committed_reference_archives_verify_and_the_readme_quotes_them():
    import tarfile

    from pipeline.datasets.registry import REGISTRY

    variants = {name: spec.variant_of for name, spec in REGISTRY.items() if spec.variant_of}
    sections = {"mnist": "### Table I's MNIST row", "cifar10_jpeg": "### Table I's CIFAR-10 row"}
    root = REPO_README.parent
    archives = sorted((root / "reports" / "reference").glob("softloss-archive-*.tar.gz"))
    assert archives
    quoted = (root / "reports" / "reference" / "README.md").read_text()
    for archive in archives:
        assert verify(archive) > 0 and archive.name in quoted
        with tarfile.open(archive) as tar:
            runs = json.loads(tar.extractfile("results/summary.json").read())["runs"]
        (dataset,) = {run["dataset"] for run in runs}
        section = REPO_README.read_text().split(sections[dataset])[1].split("###")[0]
        for entry in form_table(table_rows(runs)):
            line = next(row for row in section.splitlines() if row.startswith(f"| {entry['loss'].upper()} |"))
            assert f"| {paper_value(dataset, entry['model'], entry['loss'], variants):.2f} |" in line
            for form in ("exact", "keras"):
                if entry[form] is not None:
                    assert f"{entry[form]['mean']:.2f}" in line, (dataset, entry["loss"], form, line)


def test_provenance_names_the_code_behind_each_run(tmp_path):
    def rendered(commits):
        runs = [dict(run, commit=commit) for run, commit in zip(RUNS, commits)]
        (tmp_path / "summary.json").write_text(json.dumps({"runs": runs}))
        html = render(tmp_path / "summary.json", [], {"experiments": []}, tmp_path / "summary.html").read_text()
        return re.search(r'<td class="name" id="run-commits">(.*?)</td>', html, re.DOTALL).group(1), html

    same, _ = rendered(["a" * 40] * len(RUNS))
    assert same == f"<code>{'a' * 12}</code> ({len(RUNS)} runs)"
    mixed, html = rendered(["b" * 40 + " (with uncommitted changes)"] * 2 + [None] + ["a" * 40] * (len(RUNS) - 3))
    assert mixed.startswith(f"<code>{'a' * 12}</code> ({len(RUNS) - 3} runs); ")
    assert f"<code>{'b' * 12} (with uncommitted changes)</code> (2 runs); <code>unknown</code> (1 run)" in mixed
    assert "the runs come from different code" in mixed
    row = re.search(r"<tr><td class=\"name\">results/mnist/mnist_cnn/ce/seed1</td>.*?</tr>", html).group(0)
    assert row.endswith(f"<code>{'b' * 12} (with uncommitted changes)</code></td></tr>")
