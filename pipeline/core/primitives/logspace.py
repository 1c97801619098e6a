"""The log-space primitives every exact loss is built from, with hand-written
vector-Jacobian products: logsumexp, cross-entropy from logit differences,
softplus, the per-class log-odds and the batch mean.

Each is one traced node, so autograd's per-node overhead is paid once per
loss, not once per NumPy call. Everything goes through `array_module`, so the
same code runs on CuPy arrays. The VJPs are written on raw arrays: first
derivatives only. Float32 in, float32 out (float64 for checks).
"""

from __future__ import annotations

import numpy as np
from autograd.extend import defvjp, primitive

from ..backend import array_module
from ..settings import SETTINGS


def row_max(rows):
    """(the max of each row of a 2-D array, keepdims; its column, the first
    max's). Gathered at the argmax: NumPy reduces a short last axis row by row,
    and over 10 classes its max takes twice as long as the argmax and a gather
    together. The same value as rows.max, NaN rows included."""
    column = rows.argmax(axis=1)
    return rows[array_module(rows).arange(rows.shape[0]), column][:, None], column


def _lse_parts(x):
    """logsumexp over the last axis as m + log1p(sum of the non-max terms): the
    max term is exactly 1, so leaving it out of the sum keeps a tiny remainder
    (a confident row) from rounding away."""
    xp, rows = array_module(x), x.reshape(-1, x.shape[-1])
    m, top = row_max(rows)
    shifted = xp.exp(rows - m)
    shifted[xp.arange(rows.shape[0]), top] = 0
    return (m[:, 0] + xp.log1p(shifted.sum(axis=1))).reshape(x.shape[:-1])


@primitive
def logsumexp(x):
    """log(sum(exp(x))) over the last axis, finite for any finite x."""
    return _lse_parts(x)


defvjp(logsumexp, lambda ans, x: lambda g: g[..., None] * array_module(x).exp(x - ans[..., None]))


def _softmax_rows(*arrays):
    """pipeline.kernels.softmax_rows (SETTINGS.cross_entropy "compiled", the
    CPU's way; a GPU runs NumPy's passes) where it gives the NumPy form's bits for `arrays`
    (2-D logits first): C-ordered host arrays of one float type, rows that
    NumPy sums in the order the loops follow. Else None. (Checked per call in
    a microsecond; `array_module` and a dtype's `in` would take three.)"""
    logits = arrays[0]
    if SETTINGS.cross_entropy == "numpy" or logits.ndim != 2:
        return None
    if logits.dtype.char not in "fd" or not logits.dtype.isnative:  # numba reads native floats only
        return None
    for a in arrays:
        if type(a) is not np.ndarray or a.dtype != logits.dtype or not a.flags.c_contiguous:
            return None
    from ...kernels import softmax_rows

    return softmax_rows if logits.shape[1] <= softmax_rows.MAX_CLASSES else None


@primitive
def cross_entropy(z, onehot):
    """Per-row -log softmax(z)_c = logsumexp_j (z_j - z_c), from logit differences,
    for (N, C) logits.

    One traced node for the study's most used loss; its gradient is
    softmax(z) - onehot (the softmax shifted by the row max, never by the
    loss, which float32 holds only to ~1e-3 near |z| = 1e4)."""
    compiled = _softmax_rows(z, onehot)
    if compiled is not None:
        return compiled.cross_entropy(z, onehot)
    return _lse_parts(z - (z * onehot).sum(axis=-1, keepdims=True))


def _cross_entropy_vjp(ans, z, onehot):
    def vjp(g):
        compiled = _softmax_rows(z, onehot, g)
        if compiled is not None:
            return compiled.cross_entropy_grad(z, onehot, g)
        probs = array_module(z).exp(z - row_max(z)[0])
        probs /= probs.sum(axis=-1, keepdims=True)
        return g[..., None] * (probs - onehot)

    return vjp


defvjp(cross_entropy, _cross_entropy_vjp)


@primitive
def softplus(x):
    """log(1 + exp(x)), finite for any finite x."""
    return array_module(x).logaddexp(x, 0)


# d/dx softplus = sigmoid(x) = exp(x - softplus(x)); the exponent is <= 0.
defvjp(softplus, lambda ans, x: lambda g: g * array_module(x).exp(x - ans))


def _leave_one_out(z):
    """Shared pieces of `log_odds` and its VJP, all finite for finite z.

    With a the row's argmax (m1 = z_a) and b the argmax of the others (m2 = z_b):
      e_j     = exp(z_j - m1) for j != a, 0 at a     (<= 1)
      tail    = sum_{j != a} e_j                       (sum_j exp(z_j - m1) = 1 + tail)
      without = sum_{j != a, k} e_j for each k != a   (tail - e_k, summed directly
                                                       for k = b, where it would cancel)
      s2      = log sum_{j != a} exp(z_j - m2)         (log1p of the terms j != a, b)
    The argmax's own leave-one-out sum is shifted by m2 instead of m1, so it
    cannot underflow to log(0) when the top logit is far above the rest.
    """
    xp = array_module(z)
    classes = xp.arange(z.shape[-1])
    m1, top = row_max(z)
    is_top = classes == top[:, None]  # exactly one top, even with ties
    rest = xp.where(is_top, -xp.inf, z)
    m2, second = row_max(rest)
    is_second = classes == second[:, None]
    e = xp.where(is_top, 0, xp.exp(z - m1))
    beyond_two = xp.where(is_second, 0, e).sum(axis=-1, keepdims=True)
    tail = beyond_two + xp.exp(m2 - m1)
    without = xp.where(is_second, beyond_two, tail - e)
    s2 = xp.log1p(xp.where(is_second, 0, xp.exp(rest - m2)).sum(axis=-1, keepdims=True))
    return xp, is_top, m1, m2, rest, e, tail, without, s2


@primitive
def log_odds(z):
    """Per-class log-odds l_k = log(p_k / (1 - p_k)) = z_k - logsumexp_{j != k} z_j.

    p = softmax(z) over the last axis. Every loss of the study is a short
    function of l: -log p_k = softplus(-l_k), -log(1 - p_k) = softplus(l_k),
    and -log(p_k / sum_{j != k} p_j) = -l_k. Computing l from *differences* of
    logits (never as lse(z) - z_k at full magnitude, never as 1 - p) keeps it
    accurate to float32 rounding of l itself for logits up to +-1e4.
    """
    xp, is_top, m1, m2, _rest, _e, _tail, without, s2 = _leave_one_out(z)
    # k != a: lse_{j!=k} z - z_k = (m1 - z_k) + log1p(without_k), both terms >= 0.
    # k == a: lse_{j!=a} z - z_a = (m2 - m1) + s2.
    others = (m1 - z) + xp.log1p(without)
    return -xp.where(is_top, (m2 - m1) + s2, others)


def _log_odds_vjp(ans, z):
    def vjp(g):
        # dl_k/dz_j = [j == k] - [j != k] q_kj with q_kj = exp(z_j - lse_{i!=k} z_i).
        # For k != a, q_kj = p_j / (1 - p_k) with 1/(1 - p_k) = 1 + exp(l_k) <= 2.
        # For k == a, q_aj = exp((z_j - m2) - s2) <= 1, formed without 1/(1 - p_a).
        xp, is_top, _m1, m2, rest, e, tail, _without, s2 = _leave_one_out(z)
        p = xp.where(is_top, 1, e) / (1 + tail)
        gw = xp.where(is_top, 0, g * (1 + xp.exp(xp.where(is_top, -xp.inf, ans))))
        q_top = xp.where(is_top, 0, xp.exp(rest - m2 - s2))
        g_top = xp.where(is_top, g, 0).sum(axis=-1, keepdims=True)
        return g - p * (gw.sum(axis=-1, keepdims=True) - gw) - g_top * q_top

    return vjp


defvjp(log_odds, _log_odds_vjp)


@primitive
def batch_mean(per_example):
    """The mean of a 1-D array of per-example losses, as one traced node:
    `anp.sum` and a division are two, and the sum's VJP builds its broadcast
    from the array's metadata, together a sixth of a knet_softmax step. The
    same bits: a float32 sum divided by a Python int stays float32."""
    return per_example.sum() / per_example.shape[0]


def _batch_mean_vjp(ans, per_example):
    def vjp(g):
        grad = array_module(per_example).empty_like(per_example)
        grad[...] = g / per_example.shape[0]
        return grad

    return vjp


defvjp(batch_mean, _batch_mean_vjp)
