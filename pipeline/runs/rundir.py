"""The files of a run directory, read and written in one place.

    run.json         the run's RunConfig (written by the pipeline; `train --run-config`)
    status.json      status (running | completed | collapsed | diverged | failed) and the reason,
                     epoch, the run's config, wall time,
                     the version of the training code (pipeline.common.versions) and the commit,
                     the data's content digest, the numerics (pipeline.runs.numerics: CPU
                     settings, BLAS kernels, package versions) and the CPU threads
    history.csv      one row per finished epoch: train and test loss, accuracy, zero-one error
                     (train_* from a full pass over the training set, empty on epochs without
                     one: RunConfig.train_eval_every); running_loss and running_accuracy, the
                     means over the epoch's training batches (Keras' training metrics);
                     test_classes, how many classes the model predicts for the test images;
                     seconds, the epoch's wall time less any spell the process was stopped
                     (pipeline.common.clock), eval_seconds of it spent evaluating
    checkpoint.npz   parameters, optimizer state, RNG state and history after the last epoch
                     (checkpoint.previous.npz: the epoch before; an unreadable checkpoint is
                     set aside as *.unreadable-N and the run resumes from the previous one;
                     one of another config or training code is not resumed)
    diagnostics.csv  one row per finished epoch: where the loss's gradient went (pipeline.runs.diagnostics)
    model.npz        the final parameters (the last finite ones if the run diverged)
    metrics.json     the evaluation of model.npz (pipeline.runs.evaluate)

Every file is written to a temporary name and renamed (pipeline.common.files), so a
crash leaves the previous version whole. The .npz files hold arrays a0, a1, ...
and a JSON `meta` string, never Python objects.
"""

from __future__ import annotations

import csv
import io
import json

import numpy as np

from ..common.errors import SoftlossError
from ..common.files import write_atomic

HISTORY_FIELDS = (
    "epoch",
    "train_loss",
    "train_accuracy",
    "train_error",
    "running_loss",
    "running_accuracy",
    "test_loss",
    "test_accuracy",
    "test_error",
    "test_classes",
    "seconds",
    "eval_seconds",
)


def write_history(path, rows):
    text = io.StringIO()
    writer = csv.DictWriter(text, HISTORY_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(path, lambda out: out.write(text.getvalue().encode()))


DIAGNOSTIC_FIELDS = (
    "epoch",
    "probe_accuracy",
    "grad_norm",
    "grad_share_misclassified",
    "grad_true_class",
    "zero_grad_fraction",
    "floor_fraction",
    "margin_p10",
    "margin_p50",
    "margin_p90",
    "logit_norm",
    "test_ece",
    "test_confidence",
    "seconds",
)  # and weight_norm_1.. before the seconds


def diagnostic_fields(rows, first=()):
    """The columns of diagnostics.csv: `first`, the fields, one weight norm per matrix, the seconds."""
    norms = sorted(
        {k for row in rows for k in row if k.startswith("weight_norm_")},
        key=lambda k: int(k.rsplit("_", 1)[1]),
    )
    return [*first, *DIAGNOSTIC_FIELDS[:-1], *norms, DIAGNOSTIC_FIELDS[-1]]


def write_diagnostics(path, rows, first=()):
    text = io.StringIO()
    writer = csv.DictWriter(text, diagnostic_fields(rows, first), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(path, lambda out: out.write(text.getvalue().encode()))


def read_diagnostics(path):
    """The rows of `write_diagnostics`; an empty cell (a floor the loss does not have) is None."""
    with open(path, newline="") as handle:
        return [
            {k: v if k == "checkpoint" else _cell(k, v) for k, v in row.items()}
            for row in csv.DictReader(handle)
        ]


def read_history(path):
    """The rows of `write_history`; a value not measured (an empty cell) is None."""
    with open(path, newline="") as handle:
        return [{k: _cell(k, v) for k, v in row.items()} for row in csv.DictReader(handle)]


def _cell(column, text):
    """A number of history.csv or diagnostics.csv: the epoch whole, the rest floats, None if empty."""
    if text == "":
        return None
    return int(text) if column == "epoch" else float(text)


def save_arrays(path, arrays, meta):
    def write(out):
        np.savez(out, meta=np.array(json.dumps(meta)), **{f"a{i}": a for i, a in enumerate(arrays)})

    write_atomic(path, write)


class UnreadableFile(SoftlossError):
    """A checkpoint or model file that is truncated, corrupt or not ours."""


def load_arrays(path, what="checkpoint"):
    """(arrays, meta) of a file written by `save_arrays`; UnreadableFile if it
    is damaged. Every array is read here, so a bad CRC is found now."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            meta = json.loads(str(npz["meta"]))
            count = sum(1 for key in npz.files if key != "meta")
            return [npz[f"a{i}"] for i in range(count)], meta
    except FileNotFoundError:
        raise
    except Exception as error:  # zipfile.BadZipFile, zlib.error, EOFError, ValueError, KeyError, ...
        # (NumPy's own text for object arrays advises loading them unsafely: never pass that on.)
        reason = (
            "it holds Python objects" if "allow_pickle" in str(error) else f"{type(error).__name__}: {error}"
        )
        raise UnreadableFile(f"{path}: unreadable {what}, truncated or corrupt ({reason})") from None
