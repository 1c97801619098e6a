"""Differentiable primitives with hand-written vector-Jacobian products.

Each primitive is one traced node, so autograd's per-node overhead (10-30 us) is
paid once per layer instead of once per NumPy call, and each backward pass
does the minimum work (no `np.add.at`, no padded im2col of the cotangent).
Everything goes through `array_module`, so the same code runs on CuPy arrays.
The VJPs are written on raw arrays: first derivatives only.

Gradients are dtype-preserving: float32 in, float32 out (float64 for checks).
"""
from __future__ import annotations

from autograd.extend import defvjp, defvjp_argnums, primitive

from .backend import array_module, as_strided


# ---------------------------------------------------------------- log space
@primitive
def logsumexp(x):
    """log(sum(exp(x))) over the last axis, shifted by the row maximum."""
    xp = array_module(x)
    top = x.max(axis=-1, keepdims=True)
    return (top + xp.log(xp.exp(x - top).sum(axis=-1, keepdims=True)))[..., 0]


defvjp(logsumexp, lambda ans, x: lambda g: g[..., None] * array_module(x).exp(x - ans[..., None]))


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
    top = z.argmax(axis=-1)[..., None]
    is_top = classes == top
    m1 = xp.take_along_axis(z, top, axis=-1)
    rest = xp.where(is_top, -xp.inf, z)
    second = rest.argmax(axis=-1)[..., None]
    is_second = classes == second
    m2 = xp.take_along_axis(z, second, axis=-1)
    e = xp.where(is_top, 0, xp.exp(z - m1))
    beyond_two = xp.where(is_second, 0, e).sum(axis=-1, keepdims=True)
    tail = beyond_two + xp.take_along_axis(e, second, axis=-1)
    without = xp.where(is_second, beyond_two, tail - e)
    s2 = xp.log1p(xp.where(is_second, 0, xp.exp(rest - m2)).sum(axis=-1, keepdims=True))
    return xp, top, is_top, m1, m2, rest, e, tail, without, s2


@primitive
def log_odds(z):
    """Per-class log-odds l_k = log(p_k / (1 - p_k)) = z_k - logsumexp_{j != k} z_j.

    p = softmax(z) over the last axis. Every loss of the study is a short
    function of l: -log p_k = softplus(-l_k), -log(1 - p_k) = softplus(l_k),
    and -log(p_k / sum_{j != k} p_j) = -l_k. Computing l from *differences* of
    logits (never as lse(z) - z_k at full magnitude, never as 1 - p) keeps it
    accurate to float32 rounding of l itself for logits up to +-1e4.
    """
    xp, top, is_top, m1, m2, rest, e, tail, without, s2 = _leave_one_out(z)
    # k != a: lse_{j!=k} z - z_k = (m1 - z_k) + log1p(without_k), both terms >= 0.
    # k == a: lse_{j!=a} z - z_a = (m2 - m1) + s2.
    others = (m1 - z) + xp.log1p(without)
    return -xp.where(is_top, (m2 - m1) + s2, others)


def _log_odds_vjp(ans, z):
    def vjp(g):
        # dl_k/dz_j = [j == k] - [j != k] q_kj with q_kj = exp(z_j - lse_{i!=k} z_i).
        # For k != a, q_kj = p_j / (1 - p_k) with 1/(1 - p_k) = 1 + exp(l_k) <= 2.
        # For k == a, q_aj = exp((z_j - m2) - s2) <= 1, formed without 1/(1 - p_a).
        xp, top, is_top, m1, m2, rest, e, tail, without, s2 = _leave_one_out(z)
        p = xp.where(is_top, 1, e) / (1 + tail)
        gw = xp.where(is_top, 0, g * (1 + xp.exp(xp.where(is_top, -xp.inf, ans))))
        q_top = xp.where(is_top, 0, xp.exp(rest - m2 - s2))
        g_top = xp.take_along_axis(g, top, axis=-1)
        return g - p * (gw.sum(axis=-1, keepdims=True) - gw) - g_top * q_top

    return vjp


defvjp(log_odds, _log_odds_vjp)


# ------------------------------------------------------------------ layers
@primitive
def relu(x):
    return array_module(x).maximum(x, 0)


defvjp(relu, lambda ans, x: lambda g: g * (ans > 0))


@primitive
def linear(x, w, b):
    """x @ w + b for 2-D x (dense layers)."""
    out = x @ w
    out += b
    return out


defvjp(
    linear,
    lambda ans, x, w, b: lambda g: g @ w.T,
    lambda ans, x, w, b: lambda g: x.T @ g,
    lambda ans, x, w, b: lambda g: g.sum(axis=0),
)


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


# Images per im2col block: a block of patches (about 2 MiB) stays in cache
# between its copy and its GEMM instead of round-tripping through memory.
_PATCH_BLOCK_BYTES = 2 << 20


def _blocks(x_padded, kh, kw):
    n, h, w, c = x_padded.shape
    per_image = (h - kh + 1) * (w - kw + 1) * kh * kw * c * x_padded.itemsize
    step = max(1, _PATCH_BLOCK_BYTES // per_image)
    return [(i, min(i + step, n)) for i in range(0, n, step)]


@primitive
def conv2d(x, kernel, bias, pads=(0, 0, 0, 0)):
    """Stride-1 NHWC convolution (cross-correlation, as in Keras) of x (N, H, W, C)
    with kernel (kh, kw, C, F) plus bias (F,); `pads` = (top, bottom, left, right)
    zeros. im2col + GEMM, one block of images at a time."""
    xp = array_module(x)
    kh, kw, _, filters = kernel.shape
    x = _pad(x, pads)
    n, h, w, _ = x.shape
    ho, wo = h - kh + 1, w - kw + 1
    out = xp.empty((n, ho * wo, filters), dtype=x.dtype)
    kernel2d = kernel.reshape(-1, filters)
    buffer = None
    for start, stop in _blocks(x, kh, kw):
        cols = im2col(x[start:stop], kh, kw, out=buffer)
        buffer = cols.reshape(-1) if buffer is None else buffer
        xp.matmul(cols, kernel2d, out=out[start:stop].reshape(-1, filters))
    out += bias
    return out.reshape(n, ho, wo, filters)


def _conv2d_vjp(argnums, ans, args, kwargs):
    x, kernel, bias = args[:3]
    pads = args[3] if len(args) > 3 else kwargs.get("pads", (0, 0, 0, 0))

    def vjp(g):
        xp = array_module(g)
        kh, kw, c, filters = kernel.shape
        x_padded = _pad(x, pads)
        n, ho, wo, _ = g.shape
        g3d = g.reshape(n, ho * wo, filters)
        want_x, want_kernel = 0 in argnums, 1 in argnums
        if want_kernel:
            dkernel = xp.zeros((kh * kw * c, filters), dtype=g.dtype)
            buffer = None
        if want_x:
            # dx is a sum of kh*kw shifted slabs g @ kernel[i, j].T: thin GEMMs
            # added in place beat a patch-shaped GEMM plus a col2im scatter.
            dx = xp.zeros(x_padded.shape, dtype=g.dtype)
            taps = [[xp.ascontiguousarray(kernel[i, j].T) for j in range(kw)] for i in range(kh)]
        for start, stop in _blocks(x_padded, kh, kw):
            g_block = g3d[start:stop].reshape(-1, filters)
            if want_kernel:
                cols = im2col(x_padded[start:stop], kh, kw, out=buffer)
                buffer = cols.reshape(-1) if buffer is None else buffer
                dkernel += cols.T @ g_block
            if want_x:
                dx_block = dx[start:stop]
                for i in range(kh):
                    for j in range(kw):
                        shifted = (g_block @ taps[i][j]).reshape(stop - start, ho, wo, c)
                        dx_block[:, i : i + ho, j : j + wo, :] += shifted
        grads = {}
        if want_x:
            top, _, left, _ = pads
            grads[0] = dx[:, top : top + x.shape[1], left : left + x.shape[2], :]
        if want_kernel:
            grads[1] = dkernel.reshape(kernel.shape)
        if 2 in argnums:
            grads[2] = g3d.sum(axis=(0, 1))
        return tuple(grads[i] for i in argnums)

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
        # (common after relu) do not count a gradient twice.
        xp = array_module(g)
        dx = xp.zeros(x.shape, dtype=g.dtype)
        unclaimed = xp.ones(ans.shape, dtype=bool)
        for quadrant, dquadrant in zip(_pool_quadrants(x), _pool_quadrants(dx)):
            hit = unclaimed & (quadrant == ans)
            dquadrant[...] = g * hit
            unclaimed &= ~hit
        return dx

    return vjp


defvjp(maxpool2x2, _maxpool2x2_vjp)
