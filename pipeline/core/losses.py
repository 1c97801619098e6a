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

import functools
import inspect

import autograd.numpy as anp

from .backend import array_module
from .baselines import BASELINES
from .primitives.keras import keras_loss
from .primitives.logspace import batch_mean, cross_entropy, log_odds, softplus
from .targets import check, pick


def ce(logits, labels):
    """Cross-entropy -log softmax(z)_c (Knet's `softloss`); gradient p - onehot(c)."""
    onehot = check(logits, labels)
    return batch_mean(cross_entropy(logits, onehot))


def bce(logits, labels):
    """The paper's eq. 9: -log p_c - sum_{k != c} log(1 - p_k).

    log(1 - p_k) = logsumexp_{j != k} z_j - logsumexp_j z_j = -softplus(l_k):
    a binary cross-entropy on every class's log-odds with the one-hot target.
    """
    onehot = check(logits, labels)
    sign = 1 - 2 * onehot  # -1 for the true class, +1 for the others
    return batch_mean(anp.sum(softplus(log_odds(logits) * sign), axis=1))


def nllr(logits, labels):
    """The paper's eq. 11: -log(p_c / sum_{k != c} p_k) = logsumexp_{k != c} z_k - z_c.

    Unbounded below: it keeps falling (towards -inf) as the true logit grows
    past the others, so it never saturates the way `ce` does. For finite
    logits it is finite (at most |z_c| + max|z_k| + log C in magnitude).
    """
    onehot = check(logits, labels)
    return batch_mean(-pick(log_odds(logits), onehot))


def mse(logits, labels):
    """sum_k (p_k - onehot_k)^2 on softmax probabilities (the why-log-loss baseline)."""
    onehot = check(logits, labels)
    # |p_k - y_k| = sigmoid(+-l_k): p_k for k != c and 1 - p_c for c, each formed
    # without subtracting from 1. (No `**`: its VJP promotes float32 to float64.)
    error = anp.exp(-softplus(log_odds(logits) * (2 * onehot - 1)))
    return batch_mean(anp.sum(error * error, axis=1))


def complement(logits, labels):
    """For a label l known to be WRONG: -log p(y != l | x) = -log(1 - p_l).

    = logsumexp_j z_j - logsumexp_{k != l} z_k = softplus(l_l). Bounded below
    by 0, so pushing p_l down converges instead of running away.
    """
    onehot = check(logits, labels)
    return batch_mean(softplus(pick(log_odds(logits), onehot)))


def negated_ce(logits, labels):
    """+log p_l: the naive "negate the cross-entropy gradient" for a wrong label l.

    Unbounded below (log p_l -> -inf as p_l -> 0), so minimising it drives the
    logits apart without limit; kept so the study can show that it diverges.
    """
    onehot = check(logits, labels)
    return batch_mean(-softplus(-pick(log_odds(logits), onehot)))


def ce_keras(logits, labels):
    """Keras' categorical_crossentropy on a softmax output: -log p~_c,
    p~ = clip(softmax(z), 1e-7, 1 - 1e-7). At most -log(1e-7) = 16.1 per example."""
    return batch_mean(keras_loss(logits, check(logits, labels), "ce"))


def bce_keras(logits, labels):
    """Keras' binary_crossentropy on a softmax output, as the paper's eq. 9 ran in
    Keras: mean over the C classes of -[y_k log p~_k + (1 - y_k) log(1 - p~_k)]
    (eq. 9 divided by C; keras.losses takes K.mean over the last axis)."""
    return batch_mean(keras_loss(logits, check(logits, labels), "bce"))


def nllr_keras(logits, labels):
    """The paper's eq. 11 on clipped probabilities: -log(p~_c / sum_{k != c} p~_k).

    Floored at `pipeline.common.lossnames.nllr_keras_floor(C)` = log((C - 1) 1e-7) - log(1 - 1e-7)
    (-13.92 for C = 10), where its gradient is exactly zero: once p_c >= 1 - 1e-7
    every probability lies outside the clip range.
    """
    return batch_mean(keras_loss(logits, check(logits, labels), "nllr"))


# Complementary labels: losses of an example whose label l is known to be WRONG,
# per example, from its picked log-odds l_l and its logits.
def _complement(picked, logits, onehot):  # -log(1 - p_l): SCL-NL (Chou et al., ICML 2020)
    return softplus(picked)


def _negated_ce(
    picked, logits, onehot
):  # +log p_l: the unbiased estimator's failure (Ishida et al., ICML 2019)
    return -softplus(-picked)


def _scl_exp(picked, logits, onehot):  # exp(p_l): SCL-EXP (Chou et al., ICML 2020)
    return anp.exp(anp.exp(-softplus(-picked)))


def _pc(
    picked, logits, onehot
):  # sum_{k != l} sigmoid(z_l - z_k): pairwise comparison (Ishida et al., NeurIPS 2017)
    z_l = anp.sum(logits * onehot, axis=1, keepdims=True)
    return anp.sum(anp.exp(-softplus(logits - z_l)) * (1 - onehot), axis=1)


WRONG_LABEL_LOSSES = {"complement": _complement, "negated_ce": _negated_ce, "scl_exp": _scl_exp, "pc": _pc}


def scl_exp(logits, labels):
    """For a label l known to be WRONG: exp(p_l) (SCL-EXP, Chou et al., "Unbiased
    Risk Estimators Can Mislead", ICML 2020). Bounded: between 1 and e."""
    onehot = check(logits, labels)
    return batch_mean(_scl_exp(pick(log_odds(logits), onehot), logits, onehot))


def pc(logits, labels):
    """For a label l known to be WRONG: sum_{k != l} sigmoid(-(z_k - z_l)), the
    pairwise comparison loss (Ishida et al., "Learning from Complementary
    Labels", NeurIPS 2017), each sigmoid as exp(-softplus(.))."""
    onehot = check(logits, labels)
    return batch_mean(_pc(None, logits, onehot))


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
    "scl_exp": scl_exp,
    "pc": pc,
    **BASELINES,
}


def build(name, **options):
    """The loss `name` as a function of (logits, labels), its options (the
    config's loss options: eps, gamma, ...) bound; an unknown name or option
    is a ValueError naming it."""
    try:
        loss = LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}") from None
    accepted = list(inspect.signature(loss).parameters)[2:]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        takes = f"it takes {', '.join(accepted)}" if accepted else "it takes none"
        raise ValueError(f"loss {name!r} has no option {', '.join(unknown)} ({takes})")
    return functools.partial(loss, **options) if options else loss


def mixed_feedback(logits, labels, negative, on_negative="complement"):
    """Batches mixing both kinds of feedback.

    Rows with `negative[n]` False have a known true label and use `ce`; rows
    with `negative[n]` True only know that `labels[n]` is wrong and use
    `on_negative`, one of WRONG_LABEL_LOSSES (`complement`, `scl_exp`, `pc`,
    or `negated_ce` to show the naive treatment). Returns the mean over all rows.
    """
    if on_negative not in WRONG_LABEL_LOSSES:
        raise ValueError(f"on_negative must be one of {', '.join(WRONG_LABEL_LOSSES)}, got {on_negative!r}")
    onehot = check(logits, labels)
    xp = array_module(labels)
    negative = xp.asarray(negative)
    if negative.shape != anp.shape(labels) or negative.dtype != bool:
        raise ValueError(f"negative must be a boolean mask of shape {anp.shape(labels)}")
    picked = pick(log_odds(logits), onehot)
    is_negative = negative.astype(onehot.dtype)
    positive_loss = softplus(-picked) * (1 - is_negative)
    negative_loss = WRONG_LABEL_LOSSES[on_negative](picked, logits, onehot)
    return batch_mean(positive_loss + negative_loss * is_negative)
