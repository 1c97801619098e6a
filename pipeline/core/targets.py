"""What every loss checks first: logits (N, C) of a float type, labels one per
row in [0, C), turned into one-hot rows of the logits' dtype."""

from __future__ import annotations

import autograd.numpy as anp
import numpy as np

from .autograd_internals import getval
from .backend import array_module


def one_hot(labels, n_classes, dtype):
    """(N, C) one-hot rows; rejects host labels outside [0, n_classes).

    Labels on a GPU are not range-checked here: reading min and max back would
    stall the device twice per step. Check them where they are made (training
    data is checked when it is prepared)."""
    xp = array_module(labels)
    labels = xp.asarray(labels)
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise ValueError(f"labels must be a 1-D integer array, got {labels.dtype} {labels.shape}")
    hits = labels[:, None] == xp.arange(n_classes)
    # A label in range hits one class: one count, not a min and a max, per step.
    if xp is np and np.count_nonzero(hits) != labels.size:
        raise ValueError(
            f"labels must lie in [0, {n_classes}), got range [{int(labels.min())}, {int(labels.max())}]"
        )
    return hits.astype(dtype)


def check(logits, labels):
    value = getval(logits)
    shape, dtype = value.shape, value.dtype
    if len(shape) != 2 or shape[1] < 2:
        raise ValueError(f"logits must be (N, C) with C >= 2, got shape {shape}")
    if dtype.kind != "f":
        raise ValueError(f"logits must be floating point, got {dtype}")
    if anp.shape(labels) != shape[:1]:
        raise ValueError(f"labels shape {anp.shape(labels)} does not match logits {shape}")
    return one_hot(labels, shape[1], dtype)


def pick(x, onehot):
    """x[n, labels[n]] for each row, as a differentiable masked sum."""
    return anp.sum(x * onehot, axis=1)
