"""Final metrics of a run: accuracy, losses, confusion matrix, per-class
accuracy and expected calibration error (ECE), as one JSON file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..common.errors import SoftlossError
from ..common.files import write_json
from ..core.losses import ce
from ..datasets import hdf5
from .inference import load_model, metrics_from_logits, predict


def softmax(logits):
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def expected_calibration_error(probs, labels, bins=15):
    """sum over equal-width confidence bins of |accuracy - confidence| * share of examples."""
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    ece = 0.0
    for b in range(bins):
        in_bin = which == b
        if in_bin.any():
            ece += abs(correct[in_bin].mean() - confidence[in_bin].mean()) * in_bin.mean()
    return float(ece)


def metrics(logits, labels, loss_fn, n_classes):
    labels = labels.astype(np.int64)
    predicted = logits.argmax(axis=1)
    confusion = np.bincount(labels * n_classes + predicted, minlength=n_classes * n_classes).reshape(
        n_classes, n_classes
    )
    per_class = confusion.diagonal() / np.maximum(confusion.sum(axis=1), 1)
    summary = metrics_from_logits(logits, labels, loss_fn)
    return {
        "test_accuracy": summary["accuracy"],
        "test_loss": summary["loss"],
        "test_cross_entropy": float(ce(logits, labels)),
        "per_class_accuracy": per_class.tolist(),
        "confusion_matrix": confusion.tolist(),
        "ece": expected_calibration_error(softmax(logits.astype(np.float64)), labels),
        "n_test": len(labels),
    }


def evaluate(run_dir, data_path, out_path):
    run_dir = Path(run_dir)
    try:
        status = json.loads((run_dir / "status.json").read_text())
    except (OSError, ValueError) as error:
        raise SoftlossError(f"{run_dir}: no readable status.json; train the run first ({error})") from None
    if status.get("status") not in ("completed", "collapsed", "diverged", "failed"):
        raise SoftlossError(
            f"{run_dir}: run is {status.get('status')!r}, not finished; rerun `train` to resume it"
        )
    result = {key: status.get(key) for key in ("status", "epoch", "reason", "wall_seconds", "config")}
    result["device"] = status.get("device", "CPU")  # where it trained (pipeline.core.backend)
    result["blas"] = status.get("blas")  # and with which BLAS kernels (pipeline.common.machine.blas_kernel)
    result["commit"] = status.get("commit")  # the code that trained it (pipeline.common.versions.code_commit)
    if status["status"] in ("completed", "collapsed"):  # a model trained to its last epoch
        apply, params, config, input_shape = load_model(run_dir)
        images, labels = hdf5.load(data_path, "test")
        if images.shape[1:] != input_shape:
            raise SoftlossError(
                f"{data_path}: its images are {images.shape[1:]}, but {run_dir} was trained on "
                f"{input_shape} ({config.data}); pass the dataset it was trained on"
            )
        if config.test_size is not None:
            images, labels = images[: config.test_size], labels[: config.test_size]
        logits = predict(apply, params, images)
        result.update(metrics(logits, labels, config.build_loss(), logits.shape[1]))
    write_json(out_path, result)
    return result
