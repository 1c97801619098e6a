"""The three side studies: the feedback labels, the toy, and each study run on a
tiny config through Snakemake, its report numbers checked against its files."""

import json
import re
import shutil
from html.parser import HTMLParser

import numpy as np
import pytest
import yaml
from repo import VENDOR_DIR

from pipeline.datasets import hdf5, prepare
from pipeline.runs import feedback
from pipeline.runs.toy import toy_boundaries

TINY_STUDIES = """
experiments:
  - dataset: mnist
    model: knet_softmax
    optimizer: sgd
    hyperparameters: {lr: 0.1}
    losses: {ce: {}}
    epochs: 1
    batch_size: 100
    seeds: [1]
    train_size: 1000
    test_size: 500
studies:
  negative_feedback:
    dataset: mnist
    model: mlp
    model_options: {hidden: 32}
    optimizer: sgd
    hyperparameters: {lr: 0.5}
    fractions: [0, 0.75, 1]
    wrong_labels: [random]
    treatments: [drop, complement, scl_exp, pc, negated_ce]
    epochs: 3
    batch_size: 10
    seeds: [1]
    train_size: 1000
    test_size: 500
  log_loss:
    dataset: mnist
    models:
      knet_softmax: {optimizer: sgd, learning_rates: [0.1, 1.0, 30.0]}
    losses: [ce, mse, square_logits]
    target_accuracy: 0.8
    epochs: 2
    batch_size: 100
    seeds: [1]
    train_size: 1000
    test_size: 500
  knet_softmax:
    lr: 0.1
    epochs: 2
    batch_size: 100
    seeds: [1]
    train_size: 2000
    test_size: 500
"""


@pytest.fixture(scope="module")
def mnist_arrays(tmp_path_factory):
    out = prepare.prepare(
        "mnist", VENDOR_DIR / "mnist", tmp_path_factory.mktemp("d") / "m.h5", log=lambda *a: None
    )
    images, labels = hdf5.load(out, "train")
    return images[:3000], labels[:3000]


@pytest.mark.parametrize("how", ["random", "model"])
def test_feedback_labels(mnist_arrays, how):
    images, labels = mnist_arrays
    seen, negative = feedback.assign(images, labels, 0.5, how, seed=3)
    assert negative.sum() == 1500
    assert np.all(seen[negative] != labels[negative]) and np.all(seen[~negative] == labels[~negative])
    again, negative_again = feedback.assign(images, labels, 0.5, how, seed=3)
    assert np.array_equal(seen, again) and np.array_equal(negative, negative_again)
    if how == "model":
        # The earlier model's mistakes are flagged first, with its wrong prediction as l.
        scores = feedback.earlier_model_scores(images, labels.astype(np.int64), seed=3)
        erred = scores.argmax(axis=1) != labels
        assert 0 < erred.sum() < 1500 and negative[erred].all()
        assert np.array_equal(seen[erred], scores.argmax(axis=1)[erred])
    else:
        assert len(np.unique(seen[negative] - labels[negative])) > 10  # all offsets occur


def test_toy_linear_boundaries_fail_where_mlp_succeeds(tmp_path):
    result = toy_boundaries(tmp_path / "toy.json", steps=1500, grid=40)
    assert result["models"]["knet_softmax"]["accuracy"] < 0.7 < 0.95 < result["models"]["mlp"]["accuracy"]
    assert len(result["models"]["mlp"]["classes"]) == 40 * 40
    assert json.loads((tmp_path / "toy.json").read_text())["models"].keys() == {"knet_softmax", "mlp"}


class _Cells(HTMLParser):
    """data-accuracy cells of the negative-feedback table (and their text) and section ids."""

    def __init__(self):
        super().__init__()
        self.cells, self.texts, self.ids, self._in_table, self._in_cell = [], [], set(), False, False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        if tag == "table":
            self._in_table = attrs.get("id") == "negative-feedback-table"
        if self._in_table and tag == "td" and "data-treatment" in attrs:
            self.cells.append((attrs["data-treatment"], attrs["data-accuracy"], attrs.get("class", "")))
            self.texts.append("")
            self._in_cell = True

    def handle_endtag(self, tag):
        self._in_cell = self._in_cell and tag != "td"

    def handle_data(self, data):
        if self._in_cell and data.strip():
            self.texts[-1] = " ".join(filter(None, (self.texts[-1], data.strip())))


@pytest.fixture(scope="module")
def studies_run(tmp_path_factory, make_workdir, snakemake):
    workdir = make_workdir(tmp_path_factory.mktemp("studies"), TINY_STUDIES)
    result = snakemake(
        workdir, "--cores", "2", "negative_feedback", "log_loss", "knet_softmax", "reports/summary.html"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir


def test_each_study_is_a_target_with_outputs(studies_run):
    for study in ("negative_feedback", "log_loss", "knet_softmax"):
        runs = json.loads((studies_run / f"results/tiny/studies/{study}.json").read_text())["runs"]
        assert runs and all((studies_run / r["run_dir"] / "metrics.json").exists() for r in runs)
    assert (studies_run / "results/tiny/studies/knet_softmax/toy_boundaries.json").exists()


def test_negative_feedback_report_matches_files_and_shows_divergence(studies_run):
    html = (studies_run / "reports/summary.html").read_text()
    parser = _Cells()
    parser.feed(html)
    assert {"negative-feedback", "log-loss", "knet-softmax"} <= parser.ids
    base = studies_run / "results/tiny/studies/negative_feedback/mnist/mlp"
    rows = [
        parser.cells[i : i + 5] for i in range(0, len(parser.cells), 5)
    ]  # q = 0, 0.75, 1; five treatments each
    assert len(rows) == 3
    by_treatment = {t: (acc, cls) for t, acc, cls in rows[1]}  # q = 0.75
    for treatment in ("drop", "complement", "scl_exp", "pc"):
        metrics = json.loads((base / f"random/q0.75/{treatment}/seed1/metrics.json").read_text())
        assert float(by_treatment[treatment][0]) == pytest.approx(metrics["test_accuracy"], rel=1e-12)
    status = json.loads((base / "random/q0.75/negated_ce/seed1/status.json").read_text())
    assert status["status"] == "diverged"
    assert by_treatment["negated_ce"] == ("", "diverged")
    assert f"diverged (epoch {status['epoch']})" in html
    q0 = json.loads((base / "none/q0/none/seed1/metrics.json").read_text())["test_accuracy"]
    assert all(float(acc) == pytest.approx(q0, rel=1e-12) for _, acc, _ in rows[0])
    # q = 1: every example has only a wrong label; nothing is left to drop.
    assert not (base / "random/q1/drop").exists() and dict((t, a) for t, a, _ in rows[2])["drop"] == ""
    assert parser.texts[10] == "nothing left to drop" and rows[2][0][0] == "drop"
    every_wrong = json.loads((base / "random/q1/complement/seed1/metrics.json").read_text())["test_accuracy"]
    assert float(dict((t, a) for t, a, _ in rows[2])["complement"]) == pytest.approx(every_wrong, rel=1e-12)


def test_log_loss_and_knet_tables_match_histories(studies_run):
    html = (studies_run / "reports/summary.html").read_text()
    table = html.split('id="log-loss-table"')[1].split("</table>")[0]
    history = [
        line.split(",")
        for line in (
            studies_run / "results/tiny/studies/log_loss/mnist/knet_softmax/lr0.1/ce/seed1/history.csv"
        )
        .read_text()
        .split()[1:]
    ]
    final = float(history[-1][2])
    assert f"{final:.4f}" in table
    assert re.search(r"against it, cross-entropy got there first in\s+\d+ of 3 settings", html)
    assert "The square loss on <b>logits</b>" in html and 'data-loss="square_logits"' in table
    # a run that diverged says so where its final accuracy would be (lr 30 makes square_logits diverge)
    statuses = [
        json.loads(p.read_text())
        for p in (studies_run / "results/tiny/studies/log_loss").rglob("status.json")
    ]
    diverged = [s for s in statuses if s["status"] == "diverged"]
    assert diverged and all(s["config"]["hyperparameters"]["lr"] == 30.0 for s in diverged)
    cells = re.findall(r'<td class="diverged">([^<]*)</td>', table)
    assert sorted(cells) == sorted(f"diverged (epoch {s['epoch']})" for s in diverged)
    knet = html.split('id="knet-table"')[1].split("</table>")[0]
    rows = (
        (studies_run / "results/tiny/studies/knet_softmax/mnist/knet_softmax/ce/seed1/history.csv")
        .read_text()
        .split()
    )
    epoch1 = rows[1].split(",")
    assert f"{float(epoch1[2]):.5f}" in knet and "0.90087" in knet and "0.9048" in knet


def test_a_wheel_installed_elsewhere_renders_the_report_with_every_study(studies_run, tmp_path):
    """`pip wheel .`, installed (not editable) away from the checkout, renders
    the same run's report, the side studies' sections included: the package
    carries every template and finds nothing through the checkout's paths."""
    import subprocess
    import sys

    from repo import REPO

    # The sources alone, as a fresh clone has them: no earlier build's files.
    source, wheels, site = tmp_path / "source", tmp_path / "wheels", tmp_path / "site"
    skip = shutil.ignore_patterns(
        ".*", "build", "*.egg-info", "__pycache__", "data", "results", "reports", "logs"
    )
    shutil.copytree(REPO, source, ignore=skip)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    subprocess.run([*pip, "wheel", "--no-deps", "-w", wheels, source], check=True, capture_output=True)
    (wheel,) = wheels.glob("softloss-*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--target", site, wheel], check=True, capture_output=True)
    studies = sorted((studies_run / "results" / "tiny" / "studies").glob("*.json"))
    command = [
        sys.executable,
        "-m",
        "pipeline",
        "report",
        "--summary",
        studies_run / "results/tiny/summary.json",
        *[arg for path in studies for arg in ("--study", path)],
        "--input",
        f"toy={studies_run / 'results/tiny/studies/knet_softmax/toy_boundaries.json'}",
        "--config-json",
        json.dumps(yaml.safe_load(TINY_STUDIES)),
        "--out",
        tmp_path / "report.html",
    ]
    result = subprocess.run(
        command,
        cwd=tmp_path,
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    html = (tmp_path / "report.html").read_text()
    where = subprocess.run(
        [sys.executable, "-c", "import pipeline; print(pipeline.__file__)"],
        cwd=tmp_path,
        env={"PYTHONPATH": str(site)},
        capture_output=True,
        text=True,
    ).stdout
    assert where.startswith(str(site)), where
    for section in ("negative-feedback", "log-loss", "knet-softmax"):
        assert f'<h2 id="{section}">' in html, section


def test_the_run_counts_agree_and_the_wall_times_are_one_row_per_machine(studies_run):
    html = (studies_run / "reports/summary.html").read_text()
    table1 = len(json.loads((studies_run / "results/tiny/summary.json").read_text())["runs"])
    studies = sum(
        len(json.loads(p.read_text())["runs"]) for p in (studies_run / "results/tiny/studies").glob("*.json")
    )
    assert f"{table1 + studies} training runs: {table1} for Table I, {studies} for the side studies." in html
    groups = re.search(r'<table class="wall-groups">.*?</table>', html, re.S).group(0)
    assert (
        groups.count("<tr>") == 2 and f"<td>{table1 + studies}</td>" in groups
    )  # header, one machine and code
    every = re.search(
        r"<details><summary>Each run's wall time \((\d+) runs\)</summary>(.*?)</details>", html, re.S
    )
    assert int(every.group(1)) == table1 + studies == every.group(2).count("<tr>") - 1
