"""Differentiable primitives with hand-written vector-Jacobian products.

Each primitive is one traced node, so autograd's per-node overhead (10-30 us) is
paid once per layer instead of once per NumPy call, and each backward pass
does the minimum work (no `np.add.at`, no padded im2col of the cotangent).
Everything goes through `array_module`, so the same code runs on CuPy arrays.
The VJPs are written on raw arrays: first derivatives only.

Gradients are dtype-preserving: float32 in, float32 out (float64 for checks).
"""
from __future__ import annotations

import math

import numpy as np
from autograd.extend import defvjp, defvjp_argnums, primitive

from . import parallel
from .backend import array_module, as_strided


# ---------------------------------------------------------------- log space
def _row_max(rows):
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
    m, top = _row_max(rows)
    shifted = xp.exp(rows - m)
    shifted[xp.arange(rows.shape[0]), top] = 0
    return (m[:, 0] + xp.log1p(shifted.sum(axis=1))).reshape(x.shape[:-1])


@primitive
def logsumexp(x):
    """log(sum(exp(x))) over the last axis, finite for any finite x."""
    return _lse_parts(x)


defvjp(logsumexp, lambda ans, x: lambda g: g[..., None] * array_module(x).exp(x - ans[..., None]))


# The CPU computes cross-entropy by compiled loops (pipeline/softmax_rows.py,
# 2.1-2.3x faster over (100, 10) logits), a GPU by NumPy's passes; both give the same
# bits, and "numpy" runs the passes on the CPU too, for the tests to compare.
CROSS_ENTROPIES = ("compiled", "numpy")
CROSS_ENTROPY = "compiled"


def _softmax_rows(*arrays):
    """pipeline.softmax_rows where it gives the NumPy form's bits for `arrays`
    (2-D logits first): C-ordered host arrays of one float type, rows that
    NumPy sums in the order the loops follow. Else None. (Checked per call in
    a microsecond; `array_module` and a dtype's `in` would take three.)"""
    logits = arrays[0]
    if CROSS_ENTROPY == "numpy" or logits.ndim != 2:
        return None
    if logits.dtype.char not in "fd" or not logits.dtype.isnative:  # numba reads native floats only
        return None
    for a in arrays:
        if type(a) is not np.ndarray or a.dtype != logits.dtype or not a.flags.c_contiguous:
            return None
    from . import softmax_rows

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
        probs = array_module(z).exp(z - _row_max(z)[0])
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
    m1, top = _row_max(z)
    is_top = classes == top[:, None]  # exactly one top, even with ties
    rest = xp.where(is_top, -xp.inf, z)
    m2, second = _row_max(rest)
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


# ------------------------------------------------------------------ Keras form
KERAS_EPSILON = 1e-7  # K.epsilon() of Keras 2.1


def _clipped_softmax(z):
    """p = softmax(z), p~ = clip(p, eps, 1 - eps) with both bounds rounded to z's
    dtype (float32: 1 - eps is 1 - 2^-23, as Keras' float32 tensors give),
    1 - p~ (the top class's 1 - p summed from the others: 1 - p in float32
    keeps only ~1e-7 of it), and where the clip passes the gradient
    (tf.clip_by_value: inside the range, bounds included)."""
    xp = array_module(z)
    m, top = _row_max(z)
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


# A dense layer's GEMMs go to the cores in blocks of about this many
# floating-point operations, cut along the longest of the product's three
# dimensions (a thin cut re-packs the other operand for each block and runs
# narrow kernels); blocks along the inner dimension are partial sums, added in
# block order.
_MATMUL_BLOCK_FLOPS = 64_000_000


def matmul(a, b):
    """a @ b for 2-D arrays; on the CPU in blocks on every core."""
    if array_module(a) is not np:
        return a @ b
    parallel.workers()  # BLAS single-threaded from the first product on, small ones included
    (rows, inner), columns = a.shape, b.shape[1]
    longest = max(rows, inner, columns)
    pieces = min(longest // 16, -(-2 * rows * inner * columns // _MATMUL_BLOCK_FLOPS))
    if pieces <= 1:
        return a @ b
    spans = parallel.spans(longest, 16 * -(-longest // (16 * pieces)))
    if longest == inner:
        parts = parallel.map_blocks(lambda span: a[:, span[0] : span[1]] @ b[span[0] : span[1]], spans)
        return _sum_in_order(parts)
    out = np.empty((rows, columns), dtype=np.result_type(a, b))
    if longest == rows:
        parallel.map_blocks(lambda span: np.matmul(a[span[0] : span[1]], b, out=out[span[0] : span[1]]), spans)
    else:
        parallel.map_blocks(lambda span: np.matmul(a, b[:, span[0] : span[1]], out=out[:, span[0] : span[1]]), spans)
    return out


@primitive
def linear(x, w, b, *, relu=False, transposed=False):
    """x @ w + b for 2-D x (dense layers), optionally followed by a fused relu.

    transposed=True takes w as (outputs, inputs), Knet's layout, and computes
    x @ w.T + b: one traced node where a transpose would add one, and the
    weight's gradient comes as g.T @ x in w's own memory order (through a
    transpose it came F-ordered, which doubled the optimizer's passes)."""
    out = matmul(x, w.T if transposed else w)
    out += b
    return _activate(out, relu)


def _linear_vjp(argnums, ans, args, kwargs):
    x, w = args[:2]
    relu, transposed = kwargs.get("relu", False), kwargs.get("transposed", False)

    def vjp(g):
        g = _through_activation(g, ans, relu)
        grads = {
            0: lambda: matmul(g, w if transposed else w.T),
            1: lambda: matmul(g.T, x) if transposed else matmul(x.T, g),
            2: lambda: g.sum(axis=0),
        }
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


def im2col(x, kh, kw):
    """NHWC patches as rows, (N*Ho*Wo, kh*kw*C), in the order of a Keras
    (kh, kw, C, F) kernel reshaped to (kh*kw*C, F). One strided copy."""
    return array_module(x).ascontiguousarray(_window_view(x, kh, kw)).reshape(-1, kh * kw * x.shape[-1])


# On the CPU, work on blocks of images small enough to stay in cache between
# the copy or transform that writes them and the GEMM or add that reads them,
# instead of a round trip through memory: about 4 MiB of patches (or Winograd
# tiles) per block, or 4 L2 caches where that is less, the blocks spread over
# the cores (`parallel`). Measured in whole steps (docs/speed.md): 4 MiB best
# on a Zen 4 (1 MiB of L2); on a Zen 2 (512 KiB) 2 MiB 1.02-1.07x as fast as
# 4 at batch 128. On a GPU, each block costs kernel launches and small GEMMs fill it
# poorly: one block per batch unless its patches pass 256 MiB.
_BLOCK_BYTES = min(4 << 20, 4 * (parallel.l2_cache_bytes() or 1 << 20))
_MIN_BLOCKS = 8
_DEVICE_PATCH_BLOCK_BYTES = 256 << 20
# Winograd for 3x3 kernels where it measured faster than im2col + GEMM
# (benchmarks/conv.py): inputs of at least WINOGRAD_MIN_CHANNELS channels, in
# the tiling of fewer products (F(4x4, 3x3) but for tiny outputs). A 1- or
# 3-channel first layer is 1.2-4x faster forward direct: its GEMMs would have
# an inner dimension of 1 or 3.
WINOGRAD_MIN_CHANNELS = 16
# "auto": that rule, and a compiled kernel gradient for thinner layers;
# "direct" (im2col + GEMM only), "winograd" (that tiling), "winograd2x2" or
# "winograd4x4": every 3x3 layer on the CPU one way (the tests and
# benchmarks/conv.py compare them on the same shapes; `bench --compare` whole
# steps).
CONVOLUTIONS = ("auto", "direct", "winograd", "winograd2x2", "winograd4x4")
CONVOLUTION = "auto"


def _on_blocks(xp, work, spans):
    """work(span) for every span: on every core for NumPy; in order from this
    thread for a GPU, which queues its kernels from one thread."""
    if xp is np:
        return parallel.map_blocks(work, spans)
    return [work(span) for span in spans]


def _blocks(n_images, bytes_per_image, budget):
    """Spans of images within `budget` bytes, and at least _MIN_BLOCKS of them
    where there are enough images, so that every core gets work: a layer of
    few channels fits a whole batch in one budget."""
    fit = budget // max(1, bytes_per_image)
    return parallel.spans(n_images, min(fit, -(-n_images // _MIN_BLOCKS)))


def _winograd_transforms():
    """pipeline.winograd, loaded on first use: its transforms are compiled with
    numba, which a GPU run never needs (nor its 170 MB of LLVM)."""
    from . import winograd

    return winograd


def _thin_conv():
    """pipeline.thin_conv, loaded on first use (numba, as above)."""
    from . import thin_conv

    return thin_conv


class _ConvPlan:
    """How a stride-1 convolution of padded x (N, H, W, C) by kernel (kh, kw, C, F)
    is computed: by Winograd on the CPU where it measured faster (3x3, enough
    channels), else im2col + GEMM; and the blocks of images it is computed in."""

    def __init__(self, x_padded, kernel):
        self.xp = array_module(x_padded)
        n, h, w, c = x_padded.shape
        self.kh, self.kw, _, self.filters = kernel.shape
        self.out_h, self.out_w = h - self.kh + 1, w - self.kw + 1
        measured_faster = c >= WINOGRAD_MIN_CHANNELS
        self.winograd = (self.xp is np and (self.kh, self.kw) == (3, 3)
                         and (measured_faster if CONVOLUTION == "auto" else CONVOLUTION.startswith("winograd")))  # fmt: skip
        # A layer too thin for Winograd: its kernel gradient by a compiled
        # loop (pipeline/thin_conv.py), 2.5-4x faster than patches^T @ g.
        self.thin = self.xp is np and CONVOLUTION == "auto" and c < WINOGRAD_MIN_CHANNELS
        size = x_padded.itemsize
        self.x = x_padded
        if self.winograd:
            winograd = _winograd_transforms()
            forced = {"winograd2x2": winograd.F2X2, "winograd4x4": winograd.F4X4}
            self.tiling = tiling = forced.get(CONVOLUTION) or winograd.fewest_products(self.out_h, self.out_w)
            self.th, self.tw = tiling.tiles(self.out_h, self.out_w)
            self.transformed_kernel = tiling.transform_kernel(kernel)
            self.blocks = _blocks(n, tiling.products(self.out_h, self.out_w) * (c + self.filters) * size, _BLOCK_BYTES)
        else:
            patch_bytes = self.out_h * self.out_w * self.kh * self.kw * c * size
            if self.xp is np:
                self.blocks = _blocks(n, patch_bytes, _BLOCK_BYTES)
            else:
                self.blocks = parallel.spans(n, _DEVICE_PATCH_BLOCK_BYTES // max(1, patch_bytes))

    def patches(self, start, stop):
        """The block's im2col rows, or its Winograd-transformed input tiles."""
        if self.winograd:
            return self.tiling.transform_input(self.x[start:stop], self.th, self.tw)
        return im2col(self.x[start:stop], self.kh, self.kw)


@primitive
def conv2d(x, kernel, bias, pads=(0, 0, 0, 0), relu=False):
    """Stride-1 NHWC convolution (cross-correlation, as in Keras) of x (N, H, W, C)
    with kernel (kh, kw, C, F) plus bias (F,); `pads` = (top, bottom, left, right)
    zeros; `relu` fuses the activation. A block of images at a time, each by
    Winograd or im2col + GEMM (`_ConvPlan`)."""
    xp = array_module(x)
    plan = _ConvPlan(_pad(x, pads), kernel)
    n, filters = x.shape[0], plan.filters
    out = xp.empty((n, plan.out_h, plan.out_w, filters), dtype=x.dtype)
    kernel2d = kernel.reshape(-1, filters)

    def block(span):
        start, stop = span
        out_block = out[start:stop]
        if plan.winograd:
            products = plan.tiling.multiply(plan.patches(start, stop), plan.transformed_kernel)
            plan.tiling.transform_output(products, bias, relu, out_block)
        else:
            out2d = out_block.reshape(-1, filters)
            xp.matmul(plan.patches(start, stop), kernel2d, out=out2d)
            if plan.thin:
                _thin_conv().add_bias(out2d, bias, relu)
            else:
                out_block += bias
                _activate(out_block, relu)

    _on_blocks(xp, block, plan.blocks)
    return out


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


def _conv2d_grads_blocked(g, ans, x, kernel, pads, relu, argnums):
    """The conv2d gradients on the CPU in one pass over blocks of images: each
    block of the cotangent is masked by the fused relu, summed for the bias,
    and multiplied with the block's patches (or tiles) for the kernel and with
    the kernel for the input, while it is in cache. Per-block kernel and bias
    sums are added in block order, so the result does not depend on threads."""
    kh, kw, c, filters = kernel.shape
    plan = _ConvPlan(_pad(x, pads), kernel)
    want_x, want_kernel = 0 in argnums, 1 in argnums
    dx = np.zeros(plan.x.shape, dtype=g.dtype) if want_x else None
    if plan.winograd:
        kernel_t = plan.transformed_kernel.transpose(0, 2, 1)
    else:
        # dx is a sum of kh*kw shifted slabs g @ kernel[i, j].T: thin GEMMs
        # added in place beat a patch-shaped GEMM plus a col2im scatter, and
        # beat an im2col of the zero-padded g.
        taps = [[np.ascontiguousarray(kernel[i, j].T) for j in range(kw)] for i in range(kh)]

    def block(span):
        start, stop = span
        count, ho, wo = stop - start, plan.out_h, plan.out_w
        d_kernel = None
        if plan.winograd:  # the relu's mask applied inside the transform
            d_products = plan.tiling.output_gradient(g[start:stop], ans[start:stop], relu, plan.th, plan.tw)
            if want_kernel:
                d_kernel = plan.patches(start, stop).transpose(0, 2, 1) @ d_products
            if want_x:
                d_tiles = plan.tiling.multiply(d_products, kernel_t)
                plan.tiling.input_gradient(d_tiles, plan.th, plan.tw, dx[start:stop])
            return d_kernel, d_products[plan.tiling.bias_entry].sum(axis=0)
        if plan.thin and not want_x:  # the relu's mask applied inside the loop
            return _thin_conv().kernel_and_bias_gradients(plan.x[start:stop], g[start:stop], ans[start:stop], relu, kernel.shape)
        g_block = g[start:stop]
        if relu:
            g_block = np.where(ans[start:stop] > 0, g_block, 0)
        g2d = g_block.reshape(-1, filters)
        d_bias = g2d.sum(axis=0)
        if want_kernel:
            d_kernel = plan.patches(start, stop).T @ g2d
        if want_x:
            shifted = np.empty((g2d.shape[0], c), dtype=g.dtype)
            dx_block = dx[start:stop]
            for i in range(kh):
                for j in range(kw):
                    np.matmul(g2d, taps[i][j], out=shifted)
                    dx_block[:, i : i + ho, j : j + wo, :] += shifted.reshape(count, ho, wo, c)
        return d_kernel, d_bias

    parts = parallel.map_blocks(block, plan.blocks)
    grads = {2: lambda: _sum_in_order(part[1] for part in parts)}
    if want_kernel:
        d_kernel = _sum_in_order(part[0] for part in parts)
        grads[1] = lambda: (plan.tiling.kernel_gradient(d_kernel) if plan.winograd else d_kernel).reshape(kernel.shape)
    if want_x:
        top, _, left, _ = pads
        grads[0] = lambda: dx[:, top : top + x.shape[1], left : left + x.shape[2], :]
    return tuple(grads[i]() for i in argnums)


def _sum_in_order(arrays):
    arrays = iter(arrays)
    total = next(arrays).copy()
    for array in arrays:
        total += array
    return total


def _conv2d_vjp(argnums, ans, args, kwargs):
    x, kernel, bias = args[:3]
    pads = args[3] if len(args) > 3 else kwargs.get("pads", (0, 0, 0, 0))
    relu = args[4] if len(args) > 4 else kwargs.get("relu", False)
    grads = _conv2d_grads_blocked if array_module(x) is np else _conv2d_grads_whole_batch
    return lambda g: grads(g, ans, x, kernel, pads, relu, argnums)


defvjp_argnums(conv2d, _conv2d_vjp)


def _pooling():
    """pipeline.pooling, loaded on first use (numba, as above)."""
    from . import pooling

    return pooling


def _pool_quadrants(x):
    """The four strided (N, H//2, W//2, C) views of a 2x2 max-pool; an odd last
    row or column is dropped, as Keras' 'valid' pooling does."""
    ho, wo = x.shape[1] // 2, x.shape[2] // 2
    return [x[:, i : 2 * ho : 2, j : 2 * wo : 2, :] for i in (0, 1) for j in (0, 1)]


def _pool_blocks(x):
    """Blocks of about 1 MiB of input on the CPU; the whole batch on a GPU."""
    if array_module(x) is not np:
        return [(0, x.shape[0])]
    return _blocks(x.shape[0], x.itemsize * math.prod(x.shape[1:]), _BLOCK_BYTES // 4)


def _maxpool_by_quadrants(xp, x, out):
    a, b, c, d = _pool_quadrants(x)
    xp.maximum(xp.maximum(a, b), xp.maximum(c, d), out=out)


def _maxpool_gradient_by_quadrants(xp, x, ans, g, dx):
    # Route each cotangent to the first maximal element only, so ties (common
    # after relu) do not count a gradient twice. Every element of the
    # even-sized part of dx is written by exactly one quadrant.
    unclaimed = xp.ones(ans.shape, dtype=bool)
    hit = xp.empty(ans.shape, dtype=bool)
    quadrants = list(zip(_pool_quadrants(x), _pool_quadrants(dx)))
    for quadrant, dquadrant in quadrants[:-1]:
        xp.equal(quadrant, ans, out=hit)
        hit &= unclaimed
        xp.multiply(g, hit, out=dquadrant)
        unclaimed ^= hit  # hit is a subset of unclaimed
    xp.multiply(g, unclaimed, out=quadrants[-1][1])  # what is left is the last's max


# The CPU pools by compiled loops (pipeline/pooling.py, 2.5-4x faster than the
# passes over quadrants), a GPU by those passes; both give the same bits, and
# "quadrants" runs the passes on the CPU too, for the tests to compare.
POOLINGS = ("compiled", "quadrants")
POOLING = "compiled"


def _pool_by_quadrants(xp):
    return xp is not np or POOLING == "quadrants"


@primitive
def maxpool2x2(x):
    xp = array_module(x)
    out = xp.empty((x.shape[0], x.shape[1] // 2, x.shape[2] // 2, x.shape[3]), dtype=x.dtype)
    by_quadrants = _pool_by_quadrants(xp)

    def block(span):
        x_block, out_block = x[span[0] : span[1]], out[span[0] : span[1]]
        if by_quadrants:
            _maxpool_by_quadrants(xp, x_block, out_block)
        else:
            _pooling().maxpool(x_block, out_block)

    _on_blocks(xp, block, _pool_blocks(x))
    return out


def _maxpool2x2_vjp(ans, x):
    def vjp(g):
        xp = array_module(g)
        dx = xp.empty(x.shape, dtype=g.dtype)
        by_quadrants = _pool_by_quadrants(xp)

        def block(span):
            blocks = [a[span[0] : span[1]] for a in (x, ans, g, dx)]
            dx_block = blocks[-1]
            dx_block[:, 2 * ans.shape[1] :] = 0  # an odd last row or column gets nothing
            dx_block[:, :, 2 * ans.shape[2] :] = 0
            if by_quadrants:
                _maxpool_gradient_by_quadrants(xp, *blocks)
            else:
                _pooling().maxpool_gradient(*blocks)

        _on_blocks(xp, block, _pool_blocks(x))
        return dx

    return vjp


defvjp(maxpool2x2, _maxpool2x2_vjp)
