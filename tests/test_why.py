"""The report's "Why the losses differ" (pipeline.report.why): its claims
against diagnostics made up here, held and failed, and a real run's section."""

import json

import numpy as np

from pipeline.report import why
from pipeline.report.render import render


def _diagnostics(epochs, **series):
    """Rows of diagnostics.csv, each named series a function of the epoch."""
    base = {
        "probe_accuracy": lambda e: 0.9,
        "grad_norm": lambda e: 1.0,
        "grad_share_misclassified": lambda e: 0.1,
        "grad_true_class": lambda e: -0.5,
        "zero_grad_fraction": lambda e: 0.0,
        "floor_fraction": lambda e: 0.0,
        "margin_p10": lambda e: 1.0,
        "margin_p50": lambda e: 2.0,
        "margin_p90": lambda e: 3.0,
        "logit_norm": lambda e: 5.0,
        "test_ece": lambda e: 0.05,
        "test_confidence": lambda e: 0.9,
    }
    base.update(series)
    return [{"epoch": e, **{k: f(e) for k, f in base.items()}, "seconds": 0.1} for e in range(1, epochs + 1)]


def _run(loss, seed, diagnostics):
    return {
        "dataset": "mnist",
        "model": "mnist_cnn",
        "loss": loss,
        "seed": seed,
        "status": "completed",
        "confusion_matrix": np.eye(10, dtype=int).tolist(),
        "diagnostics": diagnostics,
    }


AS_EXPLAINED = [
    _run(
        "ce",
        1,
        _diagnostics(
            12,
            grad_true_class=lambda e: -0.5 / e,
            grad_share_misclassified=lambda e: 0.5 + e / 50,
            probe_accuracy=lambda e: 0.9 + e / 200,
        ),
    ),
    _run(
        "nllr",
        1,
        _diagnostics(
            12,
            grad_true_class=lambda e: -1.0,
            logit_norm=lambda e: 10.0**e,
            grad_share_misclassified=lambda e: 0.08,
        ),
    ),
    _run(
        "nllr_keras",
        1,
        _diagnostics(
            12,
            zero_grad_fraction=lambda e: max(0.0, (e - 4) / 10),
            margin_p90=lambda e: 3.0 * e,
            grad_share_misclassified=lambda e: 0.2,
        ),
    ),
]


def test_the_explanation_held_where_the_numbers_show_it():
    (section,) = why.sections(AS_EXPLAINED)
    claims = {c["claim"].split()[0] + " " + c["claim"].split()[1]: c for c in section["claims"]}
    assert all(c["held"] for c in section["claims"]) and len(section["claims"]) == 3
    assert "stayed within 0.0e+00 of -1 on every epoch" in claims["exact NLLR"]["measured"]
    assert "from epoch 5, 0.0% after epoch 1 and 80.0% after epoch 12" in claims["Keras' clip"]["measured"]
    assert (
        "switches NLLR's push off once an example's margin passes about 18.3 nats"
        in claims["Keras' clip"]["claim"]
    )
    assert "went from -0.500 after epoch 1 to -0.042 after epoch 12" in claims["CE's push,"]["measured"]
    assert "(against nllr's 8.0%; nllr_keras's 20.0%)" in claims["CE's push,"]["measured"]


def test_claims_from_the_runs_files_name_whole_epochs(tmp_path):
    """The report reads diagnostics.csv back: its epochs are whole numbers there too."""
    from pipeline.runs.rundir import read_diagnostics, write_diagnostics

    runs = []
    for run in AS_EXPLAINED:
        write_diagnostics(tmp_path / "diagnostics.csv", run["diagnostics"])
        runs.append({**run, "diagnostics": read_diagnostics(tmp_path / "diagnostics.csv")})
    measured = " ".join(c["measured"] for c in why.sections(runs)[0]["claims"])
    assert "from epoch 5, 0.0% after epoch 1 and 80.0% after epoch 12 " in measured
    assert "to -0.042 after epoch 12;" in measured and ".0;" not in measured


def test_a_claim_the_numbers_contradict_is_said_to_fail():
    runs = [
        _run(
            "ce", 1, _diagnostics(5, grad_share_misclassified=lambda e: 0.05)
        ),  # led by the learned examples
        _run("nllr", 1, _diagnostics(5, grad_true_class=lambda e: -0.9)),
        _run("nllr_keras", 1, _diagnostics(5)),
    ]
    (section,) = why.sections(runs)
    assert [c["held"] for c in section["claims"]] == [False, False, False]


def test_seeds_are_averaged_and_runs_without_diagnostics_leave_no_section(tmp_path):
    two = [
        _run("nllr", 1, _diagnostics(3, grad_true_class=lambda e: -1.0, logit_norm=lambda e: 2.0)),
        _run("nllr", 2, _diagnostics(3, grad_true_class=lambda e: -1.0, logit_norm=lambda e: 4.0)),
    ]
    assert "from 3 after epoch 1" in why.sections(two)[0]["claims"][0]["measured"]
    assert why.sections([{**run, "diagnostics": []} for run in two]) == []


def test_the_report_shows_the_section(tmp_path):
    runs = [
        {
            **run,
            "run_dir": f"results/x/{run['loss']}",
            "test_accuracy": 0.9,
            "ece": 0.01,
            "epoch": 12,
            "config": {"epochs": 12},
            "wall_seconds": 1.0,
            "history": [
                {"epoch": e, "test_accuracy": 0.9, "test_loss": 0.1, "train_loss": 0.1, "train_accuracy": 0.9}
                for e in range(1, 13)
            ],
        }
        for run in AS_EXPLAINED
    ]
    (tmp_path / "summary.json").write_text(json.dumps({"runs": runs}))
    html = render(tmp_path / "summary.json", [], {"experiments": []}, tmp_path / "summary.html").read_text()
    assert 'id="why-mnist-mnist_cnn"' in html and html.count('<li class="held">') == 3
