"""The losses compared at equal epochs (pipeline.report.equal_epochs), from histories made up here."""

import json

import pytest

from pipeline.report import equal_epochs
from pipeline.report.render import render


def _run(loss, seed, accuracies):
    history = [{"epoch": e, "test_accuracy": a / 100} for e, a in enumerate(accuracies, 1)]
    return {
        "run_dir": f"results/cifar10_jpeg/cifar_cnn/{loss}/seed{seed}",
        "dataset": "cifar10_jpeg",
        "model": "cifar_cnn",
        "loss": loss,
        "seed": seed,
        "status": "completed",
        "history": history,
    }


# CE climbs to 70 % by epoch 50 and stays; NLLR's Keras form trails it by 5 points and still climbs
# after it (a point per 10 epochs) to 200 epochs on seed 1; seed 2 of both stops at 100.
CE = [min(70.0, 20 + e) for e in range(1, 101)]
KERAS = [min(65.0, 15 + e) if e <= 100 else 65.0 + (e - 100) / 10 for e in range(1, 201)]
RUNS = [
    _run("ce", 1, CE),
    _run("nllr_keras", 1, KERAS),
    _run("ce", 2, CE),
    _run("nllr_keras", 2, KERAS[:100]),
]


def test_each_loss_against_ce_at_the_same_epochs_seed_by_seed():
    (table,) = equal_epochs.tables(RUNS)
    assert table["epochs"] == [10, 25, 50, 75, 100, 200]
    gaps = {gap["seed"]: gap["values"] for gap in table["gaps"]}
    assert gaps == {1: [-5.0] * 5 + [None], 2: [-5.0] * 5 + [None]}  # CE has no epoch 200
    keras1 = next(r for r in table["rows"] if (r["loss"], r["seed"]) == ("nllr_keras", 1))
    assert keras1["values"][-1] == pytest.approx(75.0) and keras1["last"] == 200
    change, span = keras1["trend"]  # epochs 191-200 against 141-150: five points higher
    assert span == 50 and change == pytest.approx(5.0)
    assert keras1["best"] == (pytest.approx(75.0), 200)
    ce1 = next(r for r in table["rows"] if (r["loss"], r["seed"]) == ("ce", 1))
    assert ce1["best"] == (pytest.approx(70.0), 50)  # the earliest epoch at its best


def test_a_short_run_looks_back_over_what_it_has():
    (table,) = equal_epochs.tables([_run("ce", 1, CE[:25]), _run("nllr_keras", 1, KERAS[:25])])
    change, span = next(r for r in table["rows"] if r["loss"] == "ce")["trend"]
    assert span == 15 and change == pytest.approx(15.0)  # epochs 16-25 against 1-10
    assert (
        equal_epochs.tables([_run("ce", 1, CE[:19]), _run("nllr_keras", 1, KERAS[:19])])[0]["rows"][0][
            "trend"
        ]
        is None
    )


def test_two_seeds_give_the_paired_mean_gap_with_its_interval():
    noisy = [
        _run("ce", 1, CE),
        _run("ce", 2, CE),
        _run("nllr_keras", 1, [a - 4 for a in CE]),
        _run("nllr_keras", 2, [a - 6 for a in CE]),
    ]
    (table,) = equal_epochs.tables(noisy)
    (mean,) = table["paired"]
    low_seed_only = equal_epochs.tables(noisy[:3])[0]["paired"]
    assert mean["loss"] == "nllr_keras" and low_seed_only == []
    gap, half, n = mean["cells"][table["epochs"].index(100)]
    assert (gap, n) == (pytest.approx(-5.0), 2) and half == pytest.approx(
        12.7062, abs=1e-4
    )  # t(0.975, 1), sd sqrt(2), n 2
    assert "-5.00 ± 12.71 at 100 (2 seeds)" in " ".join(equal_epochs.findings(table))


def test_findings_state_the_gaps_the_papers_comparison_and_the_trend():
    (table,) = equal_epochs.tables(RUNS)
    text = " ".join(equal_epochs.findings(table))
    assert "nllr_keras minus ce at equal epochs, in points: -5.00 at 10" in text and "(seed 2)" in text
    assert (
        "75.00 % after 200 epochs (seed 1) against 70.00 % after 100 (seed 1), 70.00 % after 100 (seed 2)"
        in text
    )
    assert (
        "still rising on seed 1 (+5.00 points, epochs 191-200 against 141-150; best 75.00 % at epoch 200)"
        in text
    )
    # CE levels off at epoch 50: over the last 50 epochs it still rose
    assert (
        "still rising on seed 1 (+4.50 points, epochs 91-100 against 41-50; best 70.00 % at epoch 50)" in text
    )


def test_short_runs_or_no_ce_make_no_table():
    assert equal_epochs.tables([_run("ce", 1, CE[:9]), _run("nllr_keras", 1, KERAS[:9])]) == []
    assert equal_epochs.tables([_run("bce", 1, CE), _run("nllr_keras", 1, KERAS)]) == []


def test_the_report_shows_the_table_and_its_findings(tmp_path):
    runs = [
        {
            **run,
            "test_accuracy": run["history"][-1]["test_accuracy"],
            "ece": 0.01,
            "epoch": len(run["history"]),
            "config": {"epochs": len(run["history"])},
            "confusion_matrix": [[1, 0], [0, 1]],
            "wall_seconds": 1.0,
            "history": [
                {**row, "test_loss": 1.0, "train_loss": 1.0, "train_accuracy": row["test_accuracy"]}
                for row in run["history"]
            ],
        }
        for run in RUNS
    ]
    (tmp_path / "summary.json").write_text(json.dumps({"runs": runs}))
    html = render(tmp_path / "summary.json", [], {"experiments": []}, tmp_path / "summary.html").read_text()
    assert 'class="equal-epochs" data-dataset="cifar10_jpeg"' in html and "nllr_keras &minus; ce" in html
    assert "still rising on seed 1" in html and 'class="gap paired" data-loss="nllr_keras"' in html
    assert '75.00 <span class="note">(200)</span>' in html  # the best epoch beside the last
