"""Differentiable primitives with hand-written vector-Jacobian products.

Each primitive is one traced node, so autograd's per-node overhead (10-30 us) is
paid once per layer instead of once per NumPy call, and each backward pass
does the minimum work (no `np.add.at`, no padded im2col of the cotangent).
Everything goes through `array_module`, so the same code runs on CuPy arrays.
The VJPs are written on raw arrays: first derivatives only.

Gradients are dtype-preserving: float32 in, float32 out (float64 for checks).
"""
from __future__ import annotations

import numpy as np
from autograd.extend import defvjp, defvjp_argnums, primitive

from .backend import array_module, as_strided


# ---------------------------------------------------------------- log space
def _lse_parts(x):
    """logsumexp over the last axis as m + log1p(sum of the non-max terms): the
    max term is exactly 1, so leaving it out of the sum keeps a tiny remainder
    (a confident row) from rounding away."""
    xp = array_module(x)
    top = x.argmax(axis=-1)[..., None]
    m = x.max(axis=-1, keepdims=True)
    shifted = xp.exp(x - m)
    rest = xp.where(xp.arange(x.shape[-1]) == top, 0, shifted).sum(axis=-1, keepdims=True)
    return (m + xp.log1p(rest))[..., 0]


@primitive
def logsumexp(x):
    """log(sum(exp(x))) over the last axis, finite for any finite x."""
    return _lse_parts(x)


defvjp(logsumexp, lambda ans, x: lambda g: g[..., None] * array_module(x).exp(x - ans[..., None]))


@primitive
def cross_entropy(z, onehot):
    """Per-row -log softmax(z)_c = logsumexp_j (z_j - z_c), from logit differences.

    One traced node for the study's most used loss; its gradient is
    softmax(z) - onehot (the softmax shifted by the row max, never by the
    loss, which float32 holds only to ~1e-3 near |z| = 1e4)."""
    return _lse_parts(z - (z * onehot).sum(axis=-1, keepdims=True))


def _cross_entropy_vjp(ans, z, onehot):
    def vjp(g):
        probs = array_module(z).exp(z - z.max(axis=-1, keepdims=True))
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
    is_top = classes == z.argmax(axis=-1)[..., None]  # argmax: exactly one top, even with ties
    m1 = z.max(axis=-1, keepdims=True)
    rest = xp.where(is_top, -xp.inf, z)
    is_second = classes == rest.argmax(axis=-1)[..., None]
    m2 = rest.max(axis=-1, keepdims=True)
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
    xp, is_top, m1, m2, rest, e, tail, without, s2 = _leave_one_out(z)
    # k != a: lse_{j!=k} z - z_k = (m1 - z_k) + log1p(without_k), both terms >= 0.
    # k == a: lse_{j!=a} z - z_a = (m2 - m1) + s2.
    others = (m1 - z) + xp.log1p(without)
    return -xp.where(is_top, (m2 - m1) + s2, others)


def _log_odds_vjp(ans, z):
    def vjp(g):
        # dl_k/dz_j = [j == k] - [j != k] q_kj with q_kj = exp(z_j - lse_{i!=k} z_i).
        # For k != a, q_kj = p_j / (1 - p_k) with 1/(1 - p_k) = 1 + exp(l_k) <= 2.
        # For k == a, q_aj = exp((z_j - m2) - s2) <= 1, formed without 1/(1 - p_a).
        xp, is_top, m1, m2, rest, e, tail, without, s2 = _leave_one_out(z)
        p = xp.where(is_top, 1, e) / (1 + tail)
        gw = xp.where(is_top, 0, g * (1 + xp.exp(xp.where(is_top, -xp.inf, ans))))
        q_top = xp.where(is_top, 0, xp.exp(rest - m2 - s2))
        g_top = xp.where(is_top, g, 0).sum(axis=-1, keepdims=True)
        return g - p * (gw.sum(axis=-1, keepdims=True) - gw) - g_top * q_top

    return vjp


defvjp(log_odds, _log_odds_vjp)


# ------------------------------------------------------------------ Keras form
KERAS_EPSILON = 1e-7  # K.epsilon() of Keras 2.1


def _clipped_softmax(z):
    """p = softmax(z), p~ = clip(p, eps, 1 - eps) with both bounds rounded to z's
    dtype (float32: 1 - eps is 1 - 2^-23, as Keras' float32 tensors give),
    1 - p~ (the top class's 1 - p summed from the others: 1 - p in float32
    keeps only ~1e-7 of it), and where the clip passes the gradient
    (tf.clip_by_value: inside the range, bounds included)."""
    xp = array_module(z)
    e = xp.exp(z - z.max(axis=-1, keepdims=True))
    total = e.sum(axis=-1, keepdims=True)
    is_top = xp.arange(z.shape[-1]) == z.argmax(axis=-1)[..., None]
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


# ------------------------------------------------------------------ layers
@primitive
def relu(x):
    return array_module(x).maximum(x, 0)


defvjp(relu, lambda ans, x: lambda g: g * (ans > 0))


def _activate(out, relu):
    """In-place bias-free activation of a freshly computed output."""
    if relu:
        array_module(out).maximum(out, 0, out=out)
    return out


def _through_activation(g, ans, relu):
    """The cotangent before a fused relu: zero where the output was clipped."""
    return array_module(g).where(ans > 0, g, 0) if relu else g


@primitive
def linear(x, w, b, relu=False):
    """x @ w + b for 2-D x (dense layers), optionally followed by a fused relu."""
    out = x @ w
    out += b
    return _activate(out, relu)


def _linear_vjp(argnums, ans, args, kwargs):
    x, w = args[:2]
    relu = args[3] if len(args) > 3 else kwargs.get("relu", False)

    def vjp(g):
        g = _through_activation(g, ans, relu)
        grads = {0: lambda: g @ w.T, 1: lambda: x.T @ g, 2: lambda: g.sum(axis=0)}
        return tuple(grads[i]() for i in argnums)

    return vjp


defvjp_argnums(linear, _linear_vjp)


def _window_view(x, kh, kw):
    """(N, H, W, C) -> (N, Ho, Wo, kh, kw, C) view; C stays innermost so that
    copying it moves contiguous runs of channels."""
    n, h, w, c = x.shape
    sn, sh, sw, sc = x.strides
    return as_strided(x, (n, h - kh + 1, w - kw + 1, kh, kw, c), (sn, sh, sw, sh, sw, sc))


def _pad(x, pads):
    top, bottom, left, right = pads
    if not any(pads):
        return x
    return array_module(x).pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))


def im2col(x, kh, kw, out=None):
    """NHWC patches as rows, (N*Ho*Wo, kh*kw*C), in the order of a Keras
    (kh, kw, C, F) kernel reshaped to (kh*kw*C, F). One strided copy."""
    windows = _window_view(x, kh, kw)
    if out is None:
        out = array_module(x).empty(windows.shape, dtype=x.dtype)
    else:
        out = out[: windows.size].reshape(windows.shape)
    out[...] = windows
    return out.reshape(-1, kh * kw * x.shape[-1])


# On the CPU, work on blocks of images small enough to stay in cache between
# the copy or GEMM that writes them and the GEMM or add that reads them,
# instead of a round trip through memory: about 4 MiB of patches per block.
# On a GPU, each block costs kernel launches and small GEMMs fill it poorly:
# one block per batch unless its patches pass 256 MiB.
_PATCH_BLOCK_BYTES = 4 << 20
_DEVICE_PATCH_BLOCK_BYTES = 256 << 20


def _blocks(n_images, bytes_per_image, budget):
    step = max(1, budget // bytes_per_image)
    return [(i, min(i + step, n_images)) for i in range(0, n_images, step)]


def _patch_blocks(x_padded, kh, kw):
    n, h, w, c = x_padded.shape
    budget = _PATCH_BLOCK_BYTES if array_module(x_padded) is np else _DEVICE_PATCH_BLOCK_BYTES
    return _blocks(n, (h - kh + 1) * (w - kw + 1) * kh * kw * c * x_padded.itemsize, budget)


@primitive
def conv2d(x, kernel, bias, pads=(0, 0, 0, 0), relu=False):
    """Stride-1 NHWC convolution (cross-correlation, as in Keras) of x (N, H, W, C)
    with kernel (kh, kw, C, F) plus bias (F,); `pads` = (top, bottom, left, right)
    zeros; `relu` fuses the activation. im2col + GEMM, a block of images at a time."""
    xp = array_module(x)
    kh, kw, _, filters = kernel.shape
    x = _pad(x, pads)
    n, h, w, _ = x.shape
    ho, wo = h - kh + 1, w - kw + 1
    out = xp.empty((n, ho * wo, filters), dtype=x.dtype)
    kernel2d = kernel.reshape(-1, filters)
    cols = None
    for start, stop in _patch_blocks(x, kh, kw):
        cols = im2col(x[start:stop], kh, kw, out=None if cols is None else cols.reshape(-1))
        xp.matmul(cols, kernel2d, out=out[start:stop].reshape(-1, filters))
    out += bias
    return _activate(out, relu).reshape(n, ho, wo, filters)


def _conv2d_grads_whole_batch(g, ans, x, kernel, pads, relu, argnums):
    """The conv2d gradients in a few large operations, for a GPU, where each
    kernel launch costs more than a pass over memory. The input gradient is the
    full correlation of g with the flipped kernel: an im2col of g padded by
    the kernel size and one GEMM, instead of kh*kw thin GEMMs and adds."""
    xp = array_module(g)
    kh, kw, c, filters = kernel.shape
    g = _through_activation(g, ans, relu)
    n, ho, wo, _ = g.shape
    g2d = g.reshape(-1, filters)
    grads = {2: lambda: g2d.sum(axis=0), 1: lambda: (im2col(_pad(x, pads), kh, kw).T @ g2d).reshape(kernel.shape)}
    if 0 in argnums:
        flipped = xp.ascontiguousarray(kernel[::-1, ::-1].transpose(0, 1, 3, 2)).reshape(-1, c)
        full = im2col(_pad(g, (kh - 1, kh - 1, kw - 1, kw - 1)), kh, kw) @ flipped
        top, _, left, _ = pads
        full = full.reshape(n, ho + kh - 1, wo + kw - 1, c)
        grads[0] = lambda: full[:, top : top + x.shape[1], left : left + x.shape[2], :]
    return tuple(grads[i]() for i in argnums)


def _conv2d_vjp(argnums, ans, args, kwargs):
    x, kernel, bias = args[:3]
    pads = args[3] if len(args) > 3 else kwargs.get("pads", (0, 0, 0, 0))
    relu = args[4] if len(args) > 4 else kwargs.get("relu", False)

    def vjp(g):
        xp = array_module(g)
        if xp is not np:
            return _conv2d_grads_whole_batch(g, ans, x, kernel, pads, relu, argnums)
        # On the CPU: one pass over blocks of images; each block of the
        # cotangent is masked by the fused relu, summed for the bias,
        # multiplied with the block's patches for the kernel and with the
        # kernel taps for the input, while it is in cache.
        kh, kw, c, filters = kernel.shape
        x_padded = _pad(x, pads)
        n, ho, wo, _ = g.shape
        g3d, ans3d = g.reshape(n, ho * wo, filters), ans.reshape(n, ho * wo, filters)
        want_x, want_kernel, want_bias = 0 in argnums, 1 in argnums, 2 in argnums
        dkernel = xp.zeros((kh * kw * c, filters), dtype=g.dtype)
        dbias = xp.zeros(filters, dtype=g.dtype)
        if want_x:
            # dx is a sum of kh*kw shifted slabs g @ kernel[i, j].T: thin GEMMs
            # added in place beat a patch-shaped GEMM plus a col2im scatter, and
            # beat an im2col of the zero-padded g.
            dx = xp.zeros(x_padded.shape, dtype=g.dtype)
            taps = [[xp.ascontiguousarray(kernel[i, j].T) for j in range(kw)] for i in range(kh)]
        cols = shifted = None
        for start, stop in _patch_blocks(x_padded, kh, kw):
            g_block = g3d[start:stop].reshape(-1, filters)
            if relu:
                g_block = xp.where(ans3d[start:stop].reshape(-1, filters) > 0, g_block, 0)
            if want_bias:
                dbias += g_block.sum(axis=0)
            if want_kernel:
                cols = im2col(x_padded[start:stop], kh, kw, out=None if cols is None else cols.reshape(-1))
                dkernel += cols.T @ g_block
            if want_x:
                if shifted is None:
                    shifted = xp.empty((g_block.shape[0], c), dtype=g.dtype)
                out = shifted[: g_block.shape[0]]
                dx_block = dx[start:stop]
                for i in range(kh):
                    for j in range(kw):
                        xp.matmul(g_block, taps[i][j], out=out)
                        dx_block[:, i : i + ho, j : j + wo, :] += out.reshape(stop - start, ho, wo, c)
        grads = {1: lambda: dkernel.reshape(kernel.shape), 2: lambda: dbias}
        if want_x:
            top, _, left, _ = pads
            grads[0] = lambda: dx[:, top : top + x.shape[1], left : left + x.shape[2], :]
        return tuple(grads[i]() for i in argnums)

    return vjp


defvjp_argnums(conv2d, _conv2d_vjp)


def _pool_quadrants(x):
    """The four strided (N, H//2, W//2, C) views of a 2x2 max-pool; an odd last
    row or column is dropped, as Keras' 'valid' pooling does."""
    ho, wo = x.shape[1] // 2, x.shape[2] // 2
    return [x[:, i : 2 * ho : 2, j : 2 * wo : 2, :] for i in (0, 1) for j in (0, 1)]


@primitive
def maxpool2x2(x):
    xp = array_module(x)
    a, b, c, d = _pool_quadrants(x)
    return xp.maximum(xp.maximum(a, b), xp.maximum(c, d))


def _maxpool2x2_vjp(ans, x):
    def vjp(g):
        # Route each cotangent to the first maximal element only, so ties
        # (common after relu) do not count a gradient twice. Every element of
        # the even-sized part of dx is written by exactly one quadrant.
        xp = array_module(g)
        dx = xp.empty(x.shape, dtype=g.dtype)
        dx[:, 2 * ans.shape[1] :] = 0  # an odd last row or column gets nothing
        dx[:, :, 2 * ans.shape[2] :] = 0
        unclaimed = xp.ones(ans.shape, dtype=bool)
        hit = xp.empty(ans.shape, dtype=bool)
        quadrants = list(zip(_pool_quadrants(x), _pool_quadrants(dx)))
        for quadrant, dquadrant in quadrants[:-1]:
            xp.equal(quadrant, ans, out=hit)
            hit &= unclaimed
            xp.multiply(g, hit, out=dquadrant)
            unclaimed ^= hit  # hit is a subset of unclaimed
        xp.multiply(g, unclaimed, out=quadrants[-1][1])  # what is left is the last's max
        return dx

    return vjp


defvjp(maxpool2x2, _maxpool2x2_vjp)
