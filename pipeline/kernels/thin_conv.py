"""The kernel and bias gradients of a convolution of few input channels (a
network's first layer, of 1 or 3 channels), as one compiled (numba) loop; and
the bias and relu of such a layer's forward pass (im2col + GEMM) in one.

By im2col + GEMM that gradient is a product (kh kw C x pixels) @ (pixels x F)
whose inner dimension is every output pixel of the block and whose result is
tiny, after a copy of 3-float runs into patches and a pass for the relu's
mask: slower than this loop (docs/speed.md), which reads each pixel once and adds
x * g into the (kh, kw, C, F) sums, F wide (the vectorized axis). Additions
happen pixel by pixel in a fixed order; multiply-adds may be fused (one
rounding instead of two), the same way on every run of one machine.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(nogil=True, cache=True, fastmath={"contract"})
def _gradients(x, g, ans, relu, d_kernel, d_bias):
    kh, kw, channels, filters = d_kernel.shape
    zero = g.dtype.type(0)
    kept = np.empty(filters, g.dtype)
    for n in range(g.shape[0]):
        for y in range(g.shape[1]):
            for x_ in range(g.shape[2]):
                g_row, ans_row = g[n, y, x_], ans[n, y, x_]
                for f in range(filters):  # the cotangent before the fused relu
                    kept[f] = g_row[f] if not relu or ans_row[f] > 0 else zero
                    d_bias[f] += kept[f]
                for i in range(kh):
                    for j in range(kw):
                        pixel = x[n, y + i, x_ + j]
                        for c in range(channels):
                            value, sums = pixel[c], d_kernel[i, j, c]
                            for f in range(filters):
                                sums[f] += value * kept[f]


def kernel_and_bias_gradients(x_padded, g, ans, relu, kernel_shape):
    """For padded x (n, H, W, C), cotangent g (n, Ho, Wo, F) and the output
    `ans` (whose sign masks g if `relu`): (d_kernel (kh, kw, C, F), d_bias (F,))."""
    d_kernel = np.zeros(kernel_shape, dtype=g.dtype)
    d_bias = np.zeros(kernel_shape[-1], dtype=g.dtype)
    _gradients(x_padded, g, ans, relu, d_kernel, d_bias)
    return d_kernel, d_bias


@numba.njit(nogil=True, cache=True)
def add_bias(out, bias, relu):
    """out (pixels, F) += bias in place, through a relu if `relu`: one pass, the
    same bits as `out += bias` and NumPy's vectorized `np.maximum(out, 0)` (NaN
    kept, +0 for -0), two passes that NumPy runs a row of F values at a time
    when bias broadcasts."""
    zero = out.dtype.type(0)
    for p in range(out.shape[0]):
        row = out[p]
        if relu:
            for f in range(row.shape[0]):
                value = row[f] + bias[f]
                row[f] = zero if value <= zero else value
        else:
            for f in range(row.shape[0]):
                row[f] += bias[f]
