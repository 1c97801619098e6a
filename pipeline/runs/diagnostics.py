"""Where a loss's gradient goes, measured after every epoch: the numbers that
say *why* a loss trains as it does, beside what it reaches (the history).

On a fixed probe of training examples (the same images for every loss and
seed: drawn once with a fixed seed from the whole training split; evaluation
mode, no augmentation) the gradient of the run's loss with respect to each
example's logits: its mean norm, the share of it carried by the examples the
model gets wrong, the mean of its true-class component, how many examples get
none at all (a Keras form's clip is on) and how many sit on the loss's floor;
the margin z_c - max_{j != c} z_j and the logits' size. On the test set, the
logits the epoch's evaluation made anyway: calibration (ECE) and confidence.
And each weight matrix's norm. One row per epoch, in diagnostics.csv beside
history.csv, kept in the checkpoint so that a resumed run writes the same rows.
"""

from __future__ import annotations

import time

import numpy as np

from ..core import tree
from ..core.autodiff import value_and_grad
from .evaluate import expected_calibration_error, softmax
from .inference import predict

PROBE_SIZE = 2048
PROBE_SEED = 1804  # the probe's images: the same for every run of a dataset
FLOOR_MARGIN = 1e4  # a margin past every clip and saturation: where a loss with a floor sits on it


def probe(images, labels, size=PROBE_SIZE):
    """(images, labels) of the probe: `size` training examples drawn with a fixed seed."""
    keep = np.sort(np.random.default_rng(PROBE_SEED).permutation(len(images))[: min(size, len(images))])
    return images[keep], labels[keep].astype(np.int64)


def per_example_losses(loss, logits, labels):
    """The loss of each example alone (a batch of one: the losses are batch means)."""
    return np.array([float(loss(logits[i : i + 1], labels[i : i + 1])) for i in range(len(labels))])


def logit_gradients(loss, logits, labels):
    """d loss_n / d z_n for each example n: N times the gradient of the batch mean
    (each example's loss depends on its own logits alone)."""
    return len(labels) * value_and_grad(lambda z: loss(z, labels))(logits)[1]


def floor(loss, n_classes, dtype=np.float32):
    """The loss of an example the model is certain of, if the loss stops falling
    there (its floor: 0 for CE, -13.92 for NLLR's Keras form on 10 classes);
    None if it falls on (exact NLLR) or rises (a minimum at a finite margin)."""
    values = []
    for margin in (FLOOR_MARGIN, 2 * FLOOR_MARGIN):
        logits = np.zeros((1, n_classes), dtype)
        logits[0, 0] = margin
        values.append(float(loss(logits, np.zeros(1, np.int64))))
    return values[0] if values[0] == values[1] and np.isfinite(values[0]) else None


def margins(logits, labels):
    """z_c - max_{j != c} z_j of each example."""
    rows = np.arange(len(labels))
    true = logits[rows, labels]
    others = logits.copy()
    others[rows, labels] = -np.inf
    return true - others.max(axis=1)


def weight_norms(params):
    """The Frobenius norm of each weight matrix or kernel (biases left out), in layer order."""
    return [
        float(np.linalg.norm(np.asarray(leaf, np.float64)))
        for leaf in tree.leaves(params)
        if np.ndim(leaf) >= 2
    ]


def measure(apply, params, probe_set, loss, loss_floor, test_logits, test_labels, backend):
    """One epoch's diagnostics row (without its epoch) for `params` on the host or `backend`."""
    started = time.perf_counter()
    images, labels = probe_set
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        logits = predict(apply, params, images, backend=backend)
        gradients = logit_gradients(loss, logits, labels).astype(np.float64)
        losses = per_example_losses(loss, logits, labels)
    norms = np.linalg.norm(gradients, axis=1)
    wrong = logits.argmax(axis=1) != labels
    margin = margins(logits.astype(np.float64), labels)
    probs = softmax(test_logits.astype(np.float64))
    row = {
        "probe_accuracy": float(np.mean(~wrong)),
        "grad_norm": float(norms.mean()),
        "grad_share_misclassified": float(norms[wrong].sum() / norms.sum()) if norms.sum() > 0 else 0.0,
        "grad_true_class": float(gradients[np.arange(len(labels)), labels].mean()),
        "zero_grad_fraction": float(np.mean(np.all(gradients == 0, axis=1))),
        "floor_fraction": None
        if loss_floor is None
        else float(np.mean(losses <= loss_floor + 1e-6 * max(1.0, abs(loss_floor)))),
        "margin_p10": float(np.percentile(margin, 10)),
        "margin_p50": float(np.percentile(margin, 50)),
        "margin_p90": float(np.percentile(margin, 90)),
        "logit_norm": float(np.linalg.norm(logits.astype(np.float64), axis=1).mean()),
        "test_ece": expected_calibration_error(probs, test_labels.astype(np.int64)),
        "test_confidence": float(probs.max(axis=1).mean()),
    }
    for i, norm in enumerate(weight_norms(backend.to_host(params)), 1):
        row[f"weight_norm_{i}"] = norm
    row["seconds"] = time.perf_counter() - started
    return row
