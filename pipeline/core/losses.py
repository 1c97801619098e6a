"""Classification losses of the study, in two forms.

The exact forms (`ce`, `bce`, `nllr`, and the side studies' losses) are
written in log space, below. The Keras forms (`ce_keras`, `bce_keras`,
`nllr_keras`) are the same formulas computed the way Keras 2.1 computed a
loss from a softmax output, on probabilities clipped to [1e-7, 1 - 1e-7]
(`primitives.keras.keras_loss`): that clip floors NLLR, which the exact form is not.

Every loss takes `(logits, labels)`: logits float (N, C) with C >= 2, labels
integer (N,), and returns the batch mean of the per-example loss (Knet's
`softloss` convention). Each is a short function of the per-class log-odds
l_k = log(p_k / (1 - p_k)) = z_k - logsumexp_{j != k} z_j  (`log_odds`), so
none ever forms 1 - p or subtracts two logsumexps of large magnitude; losses
and gradients stay finite for float32 logits anywhere in [-1e4, 1e4].

    -log p_k       = softplus(-l_k)
    -log(1 - p_k)  = softplus(l_k)
    p_k            = sigmoid(l_k) = exp(-softplus(-l_k))
"""
from __future__ import annotations

import autograd.numpy as anp
import numpy as np
from autograd.tracer import getval

from ..common.lossnames import NEGATIVE_LOSSES
from .backend import array_module
from .primitives.keras import keras_loss
from .primitives.logspace import batch_mean, cross_entropy, log_odds, softplus


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
            f"labels must lie in [0, {n_classes}), got range "
            f"[{int(labels.min())}, {int(labels.max())}]"
        )
    return hits.astype(dtype)


def _check(logits, labels):
    value = getval(logits)
    shape, dtype = value.shape, value.dtype
    if len(shape) != 2 or shape[1] < 2:
        raise ValueError(f"logits must be (N, C) with C >= 2, got shape {shape}")
    if dtype.kind != "f":
        raise ValueError(f"logits must be floating point, got {dtype}")
    if anp.shape(labels) != shape[:1]:
        raise ValueError(f"labels shape {anp.shape(labels)} does not match logits {shape}")
    return one_hot(labels, shape[1], dtype)


def _pick(x, onehot):
    """x[n, labels[n]] for each row, as a differentiable masked sum."""
    return anp.sum(x * onehot, axis=1)


def ce(logits, labels):
    """Cross-entropy -log softmax(z)_c (Knet's `softloss`); gradient p - onehot(c)."""
    onehot = _check(logits, labels)
    return batch_mean(cross_entropy(logits, onehot))


def bce(logits, labels):
    """The paper's eq. 9: -log p_c - sum_{k != c} log(1 - p_k).

    log(1 - p_k) = logsumexp_{j != k} z_j - logsumexp_j z_j = -softplus(l_k):
    a binary cross-entropy on every class's log-odds with the one-hot target.
    """
    onehot = _check(logits, labels)
    sign = 1 - 2 * onehot  # -1 for the true class, +1 for the others
    return batch_mean(anp.sum(softplus(log_odds(logits) * sign), axis=1))


def nllr(logits, labels):
    """The paper's eq. 11: -log(p_c / sum_{k != c} p_k) = logsumexp_{k != c} z_k - z_c.

    Unbounded below: it keeps falling (towards -inf) as the true logit grows
    past the others, so it never saturates the way `ce` does. For finite
    logits it is finite (at most |z_c| + max|z_k| + log C in magnitude).
    """
    onehot = _check(logits, labels)
    return batch_mean(-_pick(log_odds(logits), onehot))


def mse(logits, labels):
    """sum_k (p_k - onehot_k)^2 on softmax probabilities (the why-log-loss baseline)."""
    onehot = _check(logits, labels)
    # |p_k - y_k| = sigmoid(+-l_k): p_k for k != c and 1 - p_c for c, each formed
    # without subtracting from 1. (No `**`: its VJP promotes float32 to float64.)
    error = anp.exp(-softplus(log_odds(logits) * (2 * onehot - 1)))
    return batch_mean(anp.sum(error * error, axis=1))


def complement(logits, labels):
    """For a label l known to be WRONG: -log p(y != l | x) = -log(1 - p_l).

    = logsumexp_j z_j - logsumexp_{k != l} z_k = softplus(l_l). Bounded below
    by 0, so pushing p_l down converges instead of running away.
    """
    onehot = _check(logits, labels)
    return batch_mean(softplus(_pick(log_odds(logits), onehot)))


def negated_ce(logits, labels):
    """+log p_l: the naive "negate the cross-entropy gradient" for a wrong label l.

    Unbounded below (log p_l -> -inf as p_l -> 0), so minimising it drives the
    logits apart without limit; kept so the study can show that it diverges.
    """
    onehot = _check(logits, labels)
    return batch_mean(-softplus(-_pick(log_odds(logits), onehot)))


def ce_keras(logits, labels):
    """Keras' categorical_crossentropy on a softmax output: -log p~_c,
    p~ = clip(softmax(z), 1e-7, 1 - 1e-7). At most -log(1e-7) = 16.1 per example."""
    return batch_mean(keras_loss(logits, _check(logits, labels), "ce"))


def bce_keras(logits, labels):
    """Keras' binary_crossentropy on a softmax output, as the paper's eq. 9 ran in
    Keras: mean over the C classes of -[y_k log p~_k + (1 - y_k) log(1 - p~_k)]
    (eq. 9 divided by C; keras.losses takes K.mean over the last axis)."""
    return batch_mean(keras_loss(logits, _check(logits, labels), "bce"))


def nllr_keras(logits, labels):
    """The paper's eq. 11 on clipped probabilities: -log(p~_c / sum_{k != c} p~_k).

    Floored at `pipeline.common.lossnames.nllr_keras_floor(C)` = log((C - 1) 1e-7) - log(1 - 1e-7)
    (-13.92 for C = 10), where its gradient is exactly zero: once p_c >= 1 - 1e-7
    every probability lies outside the clip range.
    """
    return batch_mean(keras_loss(logits, _check(logits, labels), "nllr"))


LOSSES = {
    "ce": ce,
    "bce": bce,
    "nllr": nllr,
    "mse": mse,
    "complement": complement,
    "negated_ce": negated_ce,
    "ce_keras": ce_keras,
    "bce_keras": bce_keras,
    "nllr_keras": nllr_keras,
}

def mixed_feedback(logits, labels, negative, on_negative="complement"):
    """Batches mixing both kinds of feedback.

    Rows with `negative[n]` False have a known true label and use `ce`; rows
    with `negative[n]` True only know that `labels[n]` is wrong and use
    `on_negative` (`complement`, or `negated_ce` to show the naive treatment).
    Returns the mean over all rows.
    """
    if on_negative not in NEGATIVE_LOSSES:
        raise ValueError(f"on_negative must be one of {NEGATIVE_LOSSES}, got {on_negative!r}")
    onehot = _check(logits, labels)
    xp = array_module(labels)
    negative = xp.asarray(negative)
    if negative.shape != anp.shape(labels) or negative.dtype != bool:
        raise ValueError(f"negative must be a boolean mask of shape {anp.shape(labels)}")
    picked = _pick(log_odds(logits), onehot)
    is_negative = negative.astype(onehot.dtype)
    positive_loss = softplus(-picked) * (1 - is_negative)
    if on_negative == "complement":
        negative_loss = softplus(picked)
    else:
        negative_loss = -softplus(-picked)
    return batch_mean(positive_loss + negative_loss * is_negative)
