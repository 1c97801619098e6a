"""The literature's classification losses, beside the paper's (pipeline.core.losses).

Each takes `(logits, labels)` and returns the batch mean, and takes its
greek-letter setting as a keyword (a loss option in the config). As the exact
forms do, they are written from the per-class log-odds l_k (`log_odds`), so
none forms 1 - p where it would cancel:

    -log p_c = softplus(-l_c),   1 - p_c = exp(-softplus(l_c)),   p_c = exp(-softplus(-l_c)).

Exceptions, as their references compute them: `crl` on clipped probabilities,
as its authors' code does, and the two losses on logits themselves.
No `**`: its VJP turns float32 into float64.
"""

from __future__ import annotations

import autograd.numpy as anp

from ..common.lossnames import KERAS_EPSILON
from .primitives.dense import relu
from .primitives.logspace import batch_mean, log_odds, softplus
from .targets import check


def label_smoothing(logits, labels, eps=0.1):
    """Cross-entropy against the smoothed target (1 - eps) onehot + eps / C
    (Szegedy et al., "Rethinking the Inception Architecture", CVPR 2016):
    (1 - eps) (-log p_c) + (eps / C) sum_k -log p_k."""
    onehot = check(logits, labels)
    nll = softplus(-log_odds(logits))  # -log p_k for every k
    target = onehot * (1 - eps) + eps / onehot.shape[1]
    return batch_mean(anp.sum(nll * target, axis=1))


def focal(logits, labels, gamma=2.0):
    """Focal loss -(1 - p_c)^gamma log p_c (Lin et al., "Focal Loss for Dense
    Object Detection", ICCV 2017), the weight exp(-gamma softplus(l_c))."""
    onehot = check(logits, labels)
    picked = anp.sum(log_odds(logits) * onehot, axis=1)
    return batch_mean(anp.exp(-gamma * softplus(picked)) * softplus(-picked))


def poly1(logits, labels, eps=1.0):
    """Poly-1: -log p_c + eps (1 - p_c) (Leng et al., "PolyLoss", ICLR 2022)."""
    onehot = check(logits, labels)
    picked = anp.sum(log_odds(logits) * onehot, axis=1)
    return batch_mean(softplus(-picked) + eps * anp.exp(-softplus(picked)))


def crl(logits, labels, alpha=1.0, beta=0.25):
    """Competing Ratio Loss log((alpha - p~_c)^beta / p~_c + 1e-7) (Zhang et al.,
    arXiv:1907.13349), on p~ = clip(softmax(z), 1e-7, 1 - 1e-7) in the logits'
    dtype and alpha - p~_c formed there, as its authors' code computes it (the
    clip passes no gradient outside the range). At beta = 1 it is NLLR's Keras
    form up to the 1e-7."""
    onehot = check(logits, labels)
    p_c = anp.exp(-softplus(-anp.sum(log_odds(logits) * onehot, axis=1)))  # softmax(z)_c, to float32 rounding
    dtype = onehot.dtype.type
    clipped = anp.clip(p_c, dtype(KERAS_EPSILON), dtype(1) - dtype(KERAS_EPSILON))
    return batch_mean(anp.log(anp.exp(beta * anp.log(alpha - clipped)) / clipped + KERAS_EPSILON))


def squared_hinge(logits, labels):
    """One-vs-all squared hinge on the logits, sum_k max(0, 1 - t_k z_k)^2 with
    t_k = +1 for the true class and -1 for the others (Janocha and Czarnecki,
    "On Loss Functions for Deep Neural Networks in Classification", 2017)."""
    onehot = check(logits, labels)
    margin = relu(1 - (2 * onehot - 1) * logits)
    return batch_mean(anp.sum(margin * margin, axis=1))


def square_logits(logits, labels, k=1.0, m=1.0):
    """Square loss on the logits, (1/C) [k (z_c - M)^2 + sum_{j != c} z_j^2]
    (Hui and Belkin, "Evaluation of Neural Architectures Trained with Square
    Loss vs Cross-Entropy", ICLR 2021; k = M = 1 for up to 42 classes, larger
    for more: set them as loss options)."""
    onehot = check(logits, labels)
    error = logits - m * onehot
    weight = 1 + (k - 1) * onehot
    return batch_mean(anp.sum(weight * error * error, axis=1) / onehot.shape[1])


BASELINES = {
    "label_smoothing": label_smoothing,
    "focal": focal,
    "poly1": poly1,
    "crl": crl,
    "squared_hinge": squared_hinge,
    "square_logits": square_logits,
}
