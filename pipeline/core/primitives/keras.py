"""NLLR, CE and BCE as Keras 2.1 computed a loss from a softmax output: on
probabilities clipped to [eps, 1 - eps], one traced node with its own VJP."""

from __future__ import annotations

from autograd.extend import defvjp, primitive

from ...common.lossnames import KERAS_EPSILON
from ..backend import array_module
from .logspace import row_max


def _clipped_softmax(z):
    """p = softmax(z), p~ = clip(p, eps, 1 - eps) with both bounds rounded to z's
    dtype (float32: 1 - eps is 1 - 2^-23, as Keras' float32 tensors give),
    1 - p~ (the top class's 1 - p summed from the others: 1 - p in float32
    keeps only ~1e-7 of it), and where the clip passes the gradient
    (tf.clip_by_value: inside the range, bounds included)."""
    xp = array_module(z)
    m, top = row_max(z)
    e = xp.exp(z - m)
    total = e.sum(axis=-1, keepdims=True)
    is_top = xp.arange(z.shape[-1]) == top[:, None]
    rest = xp.where(is_top, xp.where(is_top, 0, e).sum(axis=-1, keepdims=True), total - e)
    p, not_p = e / total, rest / total
    low = z.dtype.type(KERAS_EPSILON)
    high = z.dtype.type(1) - low
    inside = (p >= low) & (p <= high)
    return p, not_p, is_top, xp.clip(p, low, high), xp.clip(not_p, 1 - high, 1 - low), inside


# Each Keras form as (per-row loss, its derivative in p~), functions of p~,
# 1 - p~ and the one-hot rows y: the backward pass needs only the derivative.
def _ce(q, not_q, y):  # -log p~_c
    return -(y * array_module(q).log(q)).sum(axis=-1)


def _d_ce(q, not_q, y):
    return -y / q


def _bce(q, not_q, y):  # mean over classes of -[y log p~ + (1 - y) log(1 - p~)]
    xp = array_module(q)
    return -(y * xp.log(q) + (1 - y) * xp.log(not_q)).sum(axis=-1) / q.shape[-1]


def _d_bce(q, not_q, y):
    return ((1 - y) / not_q - y / q) / q.shape[-1]


def _true_and_others(q, y):
    return (y * q).sum(axis=-1, keepdims=True), ((1 - y) * q).sum(axis=-1, keepdims=True)


def _nllr(q, not_q, y):  # -log(p~_c / sum_{k != c} p~_k)
    xp = array_module(q)
    true, others = _true_and_others(q, y)
    return (xp.log(others) - xp.log(true))[..., 0]


def _d_nllr(q, not_q, y):
    true, others = _true_and_others(q, y)
    return (1 - y) / others - y / true


_KERAS_TERMS = {"ce": (_ce, _d_ce), "bce": (_bce, _d_bce), "nllr": (_nllr, _d_nllr)}


@primitive
def keras_loss(z, onehot, form):
    """Per-row `form` ("ce", "bce" or "nllr") computed as Keras 2.1 did on a
    softmax output: on p~ = clip(softmax(z), eps, 1 - eps), in z's dtype.

    The clip floors every log at log(eps), so each form is bounded; its
    gradient is zero where p left [eps, 1 - eps], as TensorFlow's clip passes it.
    One traced node: the softmax Jacobian is applied in the VJP, not traced.
    """
    clipped, not_clipped = _clipped_softmax(z)[3:5]
    return _KERAS_TERMS[form][0](clipped, not_clipped, onehot)


def _keras_loss_vjp(ans, z, onehot, form):
    def vjp(g):
        xp = array_module(z)
        p, not_p, is_top, clipped, not_clipped, inside = _clipped_softmax(z)
        d_p = g[..., None] * _KERAS_TERMS[form][1](clipped, not_clipped, onehot) * inside
        # Through the softmax: dL/dz_j = p_j (dL/dp_j - sum_k p_k dL/dp_k)
        # = p_j ((1 - p_j) dL/dp_j - sum_{k != j} p_k dL/dp_k), the top class's
        # sum over the others taken directly (subtracting would cancel).
        weighted = p * d_p
        total = weighted.sum(axis=-1, keepdims=True)
        others = xp.where(is_top, xp.where(is_top, 0, weighted).sum(axis=-1, keepdims=True), total - weighted)
        return p * (not_p * d_p - others)

    return vjp


defvjp(keras_loss, _keras_loss_vjp)
