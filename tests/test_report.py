"""The report's Table I with the form axis, rendered from runs made up here."""

import json
import re
from html.parser import HTMLParser

import pytest

from pipeline.common.lossnames import nllr_keras_floor
from pipeline.report.render import render
from pipeline.report.tables import form_findings, form_table, table_rows


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


def test_table_one_shows_both_forms_side_by_side(rendered):
    _, _, html = rendered
    parser = _Cells()
    parser.feed(html)
    assert set(parser.cells) == {("ce", "exact"), ("ce", "keras"), ("nllr", "exact"), ("nllr", "keras")}
    assert parser.cells[("nllr", "keras")] == ("nllr_keras", "%.12g" % (100 * (0.9847 + 0.9850) / 2))
    assert parser.cells[("nllr", "exact")] == ("nllr", f"{60.62:.12g}")  # the completed seed only
    assert parser.cells[("ce", "exact")][0] == "ce" and parser.cells[("ce", "keras")][0] == "ce_keras"
    row = re.search(
        r'<tr data-dataset="mnist" data-model="mnist_cnn" data-loss="nllr">(.*?)</tr>', html, re.S
    ).group(1)
    assert "99.28" in row and "1 diverged" in row  # the paper's value beside both forms


def test_findings_state_the_numbers_and_the_floor(report_runs):
    entries = form_table(table_rows(report_runs))
    text = " ".join(form_findings(entries, report_runs))
    floor = nllr_keras_floor(10)
    assert f"floor of {floor:.2f}" in text and f"{-13.48 - floor:.2f} above" in text
    assert "-1.5e+30" in text and "1 of its 2 runs diverged" in text
    assert "exact form 60.62 % (one seed)" in text and "the paper reports 99.28 %" in text
    # the difference on the seed both NLLR forms completed, not over seed 2 too, where the exact form diverged
    assert f"Keras minus exact, on seed 1 (completed in both forms): {98.47 - 60.62:+.2f} points" in text
    assert (
        f"Keras minus exact: {(99.02 + 99.00) / 2 - (99.01 + 99.03) / 2:+.2f} points" in text
    )  # CE: both seeds in both


def test_the_report_names_the_paper_and_loads_nothing_from_outside(rendered):
    _, _, html = rendered
    html = " ".join(html.split())  # lines wrapped anywhere
    assert "arXiv:1804.10690" in html
    assert "Negative Log Likelihood Ratio Loss for Deep Neural Network Classification" in html
    assert not re.search(
        r'(src|href)="https?://(?!arxiv\.org/abs/1804\.10690")', html
    )  # no outside resources


def test_provenance_names_the_code_behind_eachmade_up_run(tmp_path, report_runs):
    def rendered(commits):
        runs = [dict(run, commit=commit) for run, commit in zip(report_runs, commits)]
        (tmp_path / "summary.json").write_text(json.dumps({"runs": runs}))
        html = render(
            tmp_path / "summary.json", [], {"experiments": []}, tmp_path / "summary.html"
        ).read_text()
        return re.search(r'<td class="name" id="run-commits">(.*?)</td>', html, re.DOTALL).group(1), html

    same, _ = rendered(["a" * 40] * len(report_runs))
    assert same == f"<code>{'a' * 12}</code> ({len(report_runs)} runs)"
    mixed, html = rendered(
        ["b" * 40 + " (with uncommitted changes)"] * 2 + [None] + ["a" * 40] * (len(report_runs) - 3)
    )
    assert mixed.startswith(f"<code>{'a' * 12}</code> ({len(report_runs) - 3} runs); ")
    assert (
        f"<code>{'b' * 12} (with uncommitted changes)</code> (2 runs); <code>unknown</code> (1 run)" in mixed
    )
    assert "the runs come from different code" in mixed
    row = re.search(r"<tr><td class=\"name\">results/mnist/mnist_cnn/ce/seed1</td>.*?</tr>", html).group(0)
    assert row.endswith(f"<code>{'b' * 12} (with uncommitted changes)</code></td></tr>")


def test_intervals_say_why_they_are_wide_and_stay_inside_0_to_100():
    from pipeline.report.tables import interval_text

    # One format: the half-width always, and where the interval passes 0 or 100 %, where it is clipped.
    assert (
        interval_text({"mean": 64.84, "half": 45.81, "n": 2})
        == "± 45.81 (clipped to 19.03-100.00; t = 12.71 at 2 seeds)"
    )
    assert interval_text({"mean": 98.9, "half": 0.06, "n": 2}) == "± 0.06 (t = 12.71 at 2 seeds)"
    assert (
        interval_text({"mean": 5.0, "half": 9.0, "n": 3})
        == "± 9.00 (clipped to 0.00-14.00; t = 4.30 at 3 seeds)"
    )
    assert interval_text({"mean": 50.0, "half": 1.0, "n": 5}) == "± 1.00"
    assert interval_text({"mean": 50.0, "half": None, "n": 1}) == "(one seed)"


def test_findings_say_no_result_and_that_a_loss_stayed_put(made_up_run):
    runs = [
        made_up_run("nllr", 1, 0.11, [-1e10], status="diverged"),
        made_up_run("nllr_keras", 1, 0.98, [-13.26, -13.26]),
    ]
    text = " ".join(form_findings(form_table(table_rows(runs)), runs))
    assert "exact form no result (the one run diverged)" in text and "all 1 runs" not in text
    assert (
        "was -13.26 after the first epoch and stayed there" in text
        and "went from -13.26 to -13.26" not in text
    )


def test_a_loss_that_runs_away_gets_its_own_panel_and_the_rest_a_linear_axis(monkeypatch, report_runs):
    from pipeline.report import figures

    drawn = {}
    monkeypatch.setattr(figures, "png", lambda fig: drawn.setdefault("fig", fig))
    figures.learning_curves(report_runs, "mnist", "mnist_cnn")
    axes = drawn["fig"].axes
    assert len(axes) == 6 and "nllr" in axes[2].get_title() and axes[2].get_yscale() == "symlog"
    assert axes[0].get_yscale() == "linear"  # CE, BCE, NLLR's Keras form: ticks where their values are
    low, high = axes[0].get_ylim()
    assert low < -13.0 and 0.2 < high < 5
    one_epoch = [dict(run, history=run["history"][:1]) for run in report_runs if run["loss"] == "ce"]
    drawn.clear()
    figures.learning_curves(one_epoch, "mnist", "mnist_cnn")
    assert len(drawn["fig"].axes) == 4 and list(drawn["fig"].axes[2].get_xticks()) == [1]


def test_beyond_the_paper_ranks_every_loss_and_says_where_nllr_stands(tmp_path, report_runs, made_up_run):
    from pipeline.report.tables import rankings

    runs = [
        made_up_run("ce", 1, 0.90, [0.3]),
        made_up_run("nllr_keras", 1, 0.85, [-13.0]),
        made_up_run("focal", 1, 0.92, [0.1]),
        made_up_run("poly1", 1, 0.91, [0.2]),
        made_up_run("nllr", 1, 0.2, [-1e10], status="diverged"),
    ]
    (ranking,) = rankings(table_rows(runs))
    assert [r["loss"] for r in ranking["rows"]] == ["focal", "poly1", "ce", "nllr_keras", "nllr"]
    assert ranking["finding"] == (
        "NLLR's Keras form ranks 4 of 4 at 85.00 %, 7.00 points behind the best (focal, "
        "92.00 %), -5.00 points against CE; Exact NLLR has no result (1 diverged)."
    )
    assert rankings(table_rows(report_runs)) == []  # the paper's losses alone: no such table
    (tmp_path / "summary.json").write_text(json.dumps({"runs": runs}))
    html = render(tmp_path / "summary.json", [], {"experiments": []}, tmp_path / "summary.html").read_text()
    assert "Beyond the paper: mnist / mnist_cnn" in html and "ranks 4 of 4" in html


@pytest.mark.parametrize("low, high", [(0.05, 2.3), (-0.4, 0.9), (-13.9, 0.7), (-1e30, 2.3)])
def test_a_symlog_panel_has_readable_ticks_whatever_its_range(low, high):
    """At least three ticks inside the panel, each label once (a loss inside +-1 had one tick, at 0)."""
    import matplotlib.pyplot as plt

    from pipeline.report.figures import symlog_axis

    fig, ax = plt.subplots()
    ax.plot([1, 2], [low, high])
    symlog_axis(ax)
    fig.canvas.draw()
    bottom, top = ax.get_ylim()
    shown = [t for t in ax.get_yticks() if bottom <= t <= top]
    labels = [ax.yaxis.get_major_formatter()(t, 0) for t in shown]
    plt.close(fig)
    assert 3 <= len(shown) <= 15 and len(set(labels)) == len(labels), labels


def test_the_log_loss_figure_keeps_its_labels_and_legend_off_the_curves():
    """No panel's tick labels run into the next panel, and the legend covers no panel."""
    import matplotlib.pyplot as plt

    from pipeline.studies import log_loss

    history = [{"epoch": e, "train_loss": 10.0**-e, "train_accuracy": 0.5 + 0.1 * e} for e in range(1, 6)]
    runs = [
        {
            "model": model,
            "loss": loss,
            "config": {"hyperparameters": {"lr": lr}},
            "history": history,
            "status": "completed",
            "epoch": 5,
        }
        for model in ("knet_softmax", "mlp", "mnist_cnn")
        for lr in (0.01, 0.1, 1.0)
        for loss in ("ce", "mse")
    ]
    groups = {}
    for run in runs:
        groups.setdefault((run["model"], run["config"]["hyperparameters"]["lr"], run["loss"]), []).append(run)
    rows = [log_loss._row(groups, m, lr, ["ce", "mse"], 0.9) for m, lr in sorted({k[:2] for k in groups})]
    fig = log_loss.figure(rows, groups, ["ce", "mse"], 0.9)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = [ax.get_tightbbox(renderer) for ax in fig.axes]  # each panel with its ticks and labels
    legend = fig.legends[0].get_window_extent(renderer)
    plt.close(fig)
    for i, box in enumerate(boxes):
        assert not box.overlaps(legend)
        assert not any(box.overlaps(other) for other in boxes[i + 1 :])
