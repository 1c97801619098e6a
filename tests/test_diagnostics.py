"""Where each loss's gradient goes (pipeline.runs.diagnostics): the numbers on
logits made up here against what the losses' closed forms say, and a run's
diagnostics.csv against `diagnose` and a resumed run."""

import json
import subprocess
import sys

import numpy as np
import pytest

from pipeline.common.lossnames import nllr_keras_floor
from pipeline.core.backend import NUMPY
from pipeline.core.losses import LOSSES
from pipeline.runs import diagnostics
from pipeline.runs.config import RunConfig
from pipeline.runs.rundir import read_diagnostics
from pipeline.runs.train import run

RNG = np.random.default_rng(0)
LOGITS = (3 * RNG.standard_normal((64, 10))).astype(np.float32)
LABELS = RNG.integers(0, 10, 64)


def _measure(loss_name, logits=LOGITS, labels=LABELS):
    """The diagnostics of a 'model' whose logits are `logits` (a probe of len(labels) examples)."""
    loss = LOSSES[loss_name]
    images = np.arange(len(labels), dtype=np.uint8).reshape(-1, 1, 1, 1)

    def apply(params, x):
        return logits[np.rint(x[:, 0, 0, 0] * 255).astype(int)]

    return diagnostics.measure(
        apply,
        [np.eye(2, dtype=np.float32)],
        (images, labels),
        loss,
        diagnostics.floor(loss, logits.shape[1]),
        logits,
        labels,
        NUMPY,
    )


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_the_true_class_gradient_is_minus_one_for_exact_nllr_and_p_minus_one_for_ce():
    """Exact NLLR pushes every example's true logit with the same force however
    well it is learned; CE's push, p_c - 1, fades as the example is learned."""
    z = LOGITS.astype(np.float64)
    p_c = _softmax(z)[np.arange(64), LABELS]
    assert _measure("nllr")["grad_true_class"] == pytest.approx(-1.0, abs=1e-6)
    assert _measure("ce")["grad_true_class"] == pytest.approx(np.mean(p_c - 1), rel=1e-5)
    grads = _softmax(z) - np.eye(10)[LABELS]
    norms = np.linalg.norm(grads, axis=1)
    wrong = z.argmax(axis=1) != LABELS
    ce = _measure("ce")
    assert ce["grad_norm"] == pytest.approx(norms.mean(), rel=1e-5)
    assert ce["grad_share_misclassified"] == pytest.approx(norms[wrong].sum() / norms.sum(), rel=1e-5)
    assert ce["probe_accuracy"] == pytest.approx(np.mean(~wrong))


def test_examples_past_the_clip_get_no_gradient_and_sit_on_the_floor():
    """Half the examples with a margin of 40 nats: past Keras' clip (about 16 + log 9)."""
    logits = LOGITS.copy()
    logits[:32] = 0
    logits[np.arange(32), LABELS[:32]] = 40.0
    keras = _measure("nllr_keras", logits)
    assert keras["zero_grad_fraction"] == 0.5 and keras["floor_fraction"] == 0.5
    exact = _measure("nllr", logits)
    assert exact["zero_grad_fraction"] == 0.0 and exact["floor_fraction"] is None  # unbounded: no floor
    margins = np.sort(diagnostics.margins(logits.astype(np.float64), LABELS))
    assert keras["margin_p90"] == pytest.approx(np.percentile(margins, 90)) and margins[-1] == 40.0


def test_each_losss_floor():
    assert diagnostics.floor(LOSSES["ce"], 10) == 0.0
    assert diagnostics.floor(LOSSES["nllr_keras"], 10) == pytest.approx(nllr_keras_floor(10), abs=1e-5)
    assert diagnostics.floor(LOSSES["nllr"], 10) is None  # falls on
    assert diagnostics.floor(LOSSES["label_smoothing"], 10) is None  # its minimum lies at a finite margin


def test_the_probe_is_the_same_images_for_every_run_of_a_dataset():
    images = np.arange(5000)[:, None, None, None] % 256
    labels = np.arange(5000) % 10
    first, second = diagnostics.probe(images, labels), diagnostics.probe(images.copy(), labels.copy())
    assert len(first[1]) == diagnostics.PROBE_SIZE and np.array_equal(first[0], second[0])
    assert len(diagnostics.probe(images[:100], labels[:100])[1]) == 100


def _config(mnist_h5, **changes):
    base = dict(
        data=str(mnist_h5),
        model="mlp",
        model_options={"hidden": 16},
        loss="nllr_keras",
        optimizer="sgd",
        epochs=2,
        batch_size=100,
        seed=3,
        hyperparameters={"lr": 0.1},
        train_size=2000,
        test_size=500,
    )
    return RunConfig(**{**base, **changes})


def _without_seconds(rows):
    return [{k: v for k, v in row.items() if k not in ("seconds", "checkpoint")} for row in rows]


def test_a_run_writes_them_every_epoch_and_diagnose_gives_the_same_numbers(mnist_h5, tmp_path):
    out = tmp_path / "run"
    run(_config(mnist_h5), out, quiet=True, log=lambda *a: None)
    rows = read_diagnostics(out / "diagnostics.csv")
    assert [row["epoch"] for row in rows] == [1, 2] and {"weight_norm_1", "weight_norm_2"} <= set(rows[0])
    assert rows[1]["floor_fraction"] is not None and 0 < rows[1]["probe_accuracy"] <= 1
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", "diagnose", str(out / "checkpoint.npz")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert _without_seconds([json.loads(result.stdout)]) == _without_seconds(rows[1:])


def test_a_resumed_run_writes_the_same_rows(mnist_h5, tmp_path):
    whole, halves = tmp_path / "whole", tmp_path / "halves"
    run(_config(mnist_h5), whole, quiet=True, log=lambda *a: None)
    run(_config(mnist_h5, epochs=1), halves, quiet=True, log=lambda *a: None)
    (halves / "diagnostics.csv").unlink()  # the checkpoint holds them
    run(_config(mnist_h5), halves, quiet=True, log=lambda *a: None)
    assert _without_seconds(read_diagnostics(halves / "diagnostics.csv")) == _without_seconds(
        read_diagnostics(whole / "diagnostics.csv")
    )


def test_every_losss_gradient_is_its_closed_form():
    """docs/losses.md's gradients (tests/closed_forms.py, float64) against
    autograd's through the float32 losses, per example, for every loss; rows of
    ordinary logits and rows past Keras' clip (margin 40)."""
    from closed_forms import GRADIENTS

    assert set(GRADIENTS) == set(LOSSES)
    rng = np.random.default_rng(7)
    logits = (2 * rng.standard_normal((48, 10))).astype(np.float32)
    labels = rng.integers(0, 10, 48)
    logits[:8] = 0
    logits[np.arange(8), labels[:8]] = 40.0
    for name, closed in GRADIENTS.items():
        measured = diagnostics.logit_gradients(LOSSES[name], logits, labels)
        expected = np.array([closed(z.astype(np.float64), c) for z, c in zip(logits, labels)])
        np.testing.assert_allclose(measured, expected, rtol=2e-4, atol=2e-6, err_msg=name)


def test_a_run_that_diverges_in_its_first_epoch_writes_the_file_without_rows(mnist_h5, tmp_path):
    out = tmp_path / "run"
    status = run(
        _config(mnist_h5, loss="negated_ce", hyperparameters={"lr": 1e6}, epochs=3),
        out,
        quiet=True,
        log=lambda *a: None,
    )
    assert status["status"] == "diverged" and status["epoch"] == 1
    assert read_diagnostics(out / "diagnostics.csv") == []
