"""Winograd F(2x2, 3x3): a 3x3 stride-1 convolution in 2.25x fewer multiplies.

Each 2x2 block of outputs ("tile") is computed from the 4x4 block of inputs
under it as A^T [(G k G^T) * (B^T d B)] A (Lavin and Gray, "Fast Algorithms
for Convolutional Neural Networks", 2016): the 16 products per tile and
channel pair become 16 GEMMs (tiles x C) @ (C x F), against 36 multiplies per
tile in the direct convolution. B, G and A hold only 0, +-1 and +-1/2, so the
transforms are adds, and float32 error stays near that of the direct
product. The gradients are the same three transforms transposed: the kernel
gradient is 16 GEMMs (C x tiles) @ (tiles x F), the input gradient 16 GEMMs
(tiles x F) @ (F x C).

The GEMMs go to BLAS; the transforms are compiled (numba) loops over tiles,
with the bias, the relu and its mask fused in: written with NumPy, each
transform was a dozen passes over memory and cost about what the saved
multiplies did. A tile is transformed in two steps through a small buffer,
each step a loop over channels that touches at most eight rows of memory, as
LLVM vectorizes those (with sixteen loads and sixteen stores in one loop it
gives up and runs one channel at a time, 2-5x slower). No fast-math: every
float operation happens in the order written, so a result is the same bits on
every run.

Arrays are NHWC, kernels (3, 3, C, F) as in Keras; inputs arrive padded (the
convolution's own zeros), and a grid of tiles that overhangs an odd output
size reads one extra row or column of zeros and drops the outputs it would
write there. The transforms work on one block of images at a time, so that
callers can keep a block in cache and hand blocks to several cores (the
loops release the GIL).
"""
from __future__ import annotations

import numba
import numpy as np

# The kernel transform G (4x3). B^T and A^T are written out in the loops below:
#   B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]
#   A^T = [[1, 1, 1, 0], [0, 1, -1, -1]]
G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])

# Entry (1, 1) of the 16 is the only one that A^T . A carries to each of a
# tile's four outputs with weight 1: a tile's output gradient sums there, so
# the bias gradient is the sum of that entry over tiles.
BIAS_ENTRY = 1 * 4 + 1

_compiled = numba.njit(nogil=True, cache=True)


def tiles(out_h, out_w):
    """The grid of 2x2 output tiles covering an (out_h, out_w) output."""
    return -(-out_h // 2), -(-out_w // 2)


def pad_to_tiles(x, out_h, out_w):
    """x (N, out_h + 2, out_w + 2, C) with one zero row / column added where the
    output size is odd, so that every 4x4 input block of the grid exists."""
    th, tw = tiles(out_h, out_w)
    extra_h, extra_w = 2 * th - out_h, 2 * tw - out_w
    if not (extra_h or extra_w):
        return x
    return np.pad(x, ((0, 0), (0, extra_h), (0, extra_w), (0, 0)))


def transform_kernel(kernel):
    """(3, 3, C, F) -> (16, C, F): G k G^T for every channel pair."""
    g = G.astype(kernel.dtype)
    c, f = kernel.shape[2:]
    return np.einsum("ia,abcf,jb->ijcf", g, kernel, g).reshape(16, c, f)


def kernel_gradient(d_transformed):
    """(16, C, F) -> (3, 3, C, F): the gradient through `transform_kernel`."""
    g = G.astype(d_transformed.dtype)
    c, f = d_transformed.shape[1:]
    return np.einsum("ia,ijcf,jb->abcf", g, d_transformed.reshape(4, 4, c, f), g)



@_compiled
def _b_transpose(d0, d1, d2, d3):
    """sum_r B^T[i, r] d_r, i = 0..3."""
    return d0 - d2, d1 + d2, d2 - d1, d1 - d3


@_compiled
def _b(v0, v1, v2, v3):
    """sum_i B^T[i, r] v_i, r = 0..3: the transpose of `_b_transpose`."""
    return v0, v1 - v2 + v3, v2 + v1 - v0, -v3


@_compiled
def _a_transpose(m0, m1, m2, m3):
    """sum_i A^T[a, i] m_i, a = 0, 1."""
    return m0 + m1 + m2, m1 - m2 - m3


@_compiled
def _a(u0, u1):
    """sum_a A^T[a, i] u_a, i = 0..3: the transpose of `_a_transpose`."""
    return u0, u0 + u1, u0 - u1, -u1


@_compiled
def _transform_input(x, th, tw, out):
    half = np.empty((4, 4, x.shape[3]), x.dtype)  # B^T over a tile's columns, row by row
    for n in range(x.shape[0]):
        for ti in range(th):
            for tj in range(tw):
                t, r, s = (n * th + ti) * tw + tj, 2 * ti, 2 * tj
                for i in range(4):
                    row, h = x[n, r + i], half[i]
                    for ch in range(x.shape[3]):
                        h[0, ch], h[1, ch], h[2, ch], h[3, ch] = _b_transpose(row[s, ch], row[s + 1, ch], row[s + 2, ch], row[s + 3, ch])
                for j in range(4):  # then over its rows
                    for ch in range(x.shape[3]):
                        out[j, t, ch], out[4 + j, t, ch], out[8 + j, t, ch], out[12 + j, t, ch] = _b_transpose(
                            half[0, j, ch], half[1, j, ch], half[2, j, ch], half[3, j, ch]
                        )


def transform_input(x, th, tw):
    """Padded x (n, 2 th + 2, 2 tw + 2, C) -> (16, n * th * tw, C): B^T d B for
    every 4x4 input block, the 16 entries outermost (the batched GEMMs' axis)."""
    out = np.empty((16, x.shape[0] * th * tw, x.shape[3]), dtype=x.dtype)
    _transform_input(x, th, tw, out)
    return out


@_compiled
def _input_gradient(d, th, tw, out):
    half = np.empty((4, 4, out.shape[3]), out.dtype)  # B over the 16 entries' rows
    for n in range(out.shape[0]):
        for ti in range(th):
            for tj in range(tw):
                t, r, s = (n * th + ti) * tw + tj, 2 * ti, 2 * tj
                for j in range(4):
                    for ch in range(out.shape[3]):
                        half[0, j, ch], half[1, j, ch], half[2, j, ch], half[3, j, ch] = _b(
                            d[j, t, ch], d[4 + j, t, ch], d[8 + j, t, ch], d[12 + j, t, ch]
                        )
                for i in range(4):  # then over their columns, added where the tile read
                    row, h = out[n, r + i], half[i]
                    for ch in range(out.shape[3]):
                        v0, v1, v2, v3 = _b(h[0, ch], h[1, ch], h[2, ch], h[3, ch])
                        row[s, ch] += v0
                        row[s + 1, ch] += v1
                        row[s + 2, ch] += v2
                        row[s + 3, ch] += v3


def input_gradient(d_transformed, out):
    """(16, n * th * tw, C) -> adds the gradient through `transform_input` to
    `out` (n, 2 th + 2, 2 tw + 2, C)."""
    _input_gradient(d_transformed, (out.shape[1] - 2) // 2, (out.shape[2] - 2) // 2, out)
    return out


@_compiled
def _transform_output(m, bias, relu, th, tw, out):
    height, width, filters = out.shape[1], out.shape[2], out.shape[3]
    zero = out.dtype.type(0)
    half = np.empty((2, 4, filters), m.dtype)  # A^T over the 16 entries' rows
    for n in range(out.shape[0]):
        for ti in range(th):
            for tj in range(tw):
                t, r, s = (n * th + ti) * tw + tj, 2 * ti, 2 * tj
                for j in range(4):
                    for f in range(filters):
                        half[0, j, f], half[1, j, f] = _a_transpose(m[j, t, f], m[4 + j, t, f], m[8 + j, t, f], m[12 + j, t, f])
                # then over their columns; a grid overhanging an odd size drops its last row or column
                columns = min(2, width - s)
                for a in range(min(2, height - r)):
                    row, h = out[n, r + a], half[a]
                    if columns == 2:
                        for f in range(filters):
                            left, right = _a_transpose(h[0, f], h[1, f], h[2, f], h[3, f])
                            row[s, f], row[s + 1, f] = left + bias[f], right + bias[f]
                    else:
                        for f in range(filters):
                            row[s, f] = _a_transpose(h[0, f], h[1, f], h[2, f], h[3, f])[0] + bias[f]
                    if relu:
                        written = row[s : s + columns].ravel()
                        for q in range(written.size):
                            written[q] = max(written[q], zero)


def transform_output(m, bias, relu, out):
    """(16, n * th * tw, F) -> out (n, H, W, F): A^T m A for every tile plus
    the bias, through a relu if `relu`; outputs of an overhanging grid dropped."""
    _transform_output(m, bias, relu, *tiles(out.shape[1], out.shape[2]), out)
    return out


@_compiled
def _output_gradient(g, ans, relu, th, tw, out):
    height, width, filters = g.shape[1], g.shape[2], g.shape[3]
    zero = g.dtype.type(0)
    half = np.empty((2, 4, filters), g.dtype)  # A over a tile's columns, row by row
    for n in range(g.shape[0]):
        for ti in range(th):
            for tj in range(tw):
                t, r, s = (n * th + ti) * tw + tj, 2 * ti, 2 * tj
                for a in range(2):
                    h = half[a]
                    if r + a == height:  # a grid overhanging an odd size: zeros
                        h[...] = 0
                        continue
                    row, kept = g[n, r + a], ans[n, r + a]
                    if s + 1 == width:
                        for f in range(filters):
                            left = row[s, f] if not relu or kept[s, f] > 0 else zero
                            h[0, f], h[1, f], h[2, f], h[3, f] = _a(left, zero)
                    elif relu:  # the cotangent before the fused relu
                        for f in range(filters):
                            left = row[s, f] if kept[s, f] > 0 else zero
                            right = row[s + 1, f] if kept[s + 1, f] > 0 else zero
                            h[0, f], h[1, f], h[2, f], h[3, f] = _a(left, right)
                    else:
                        for f in range(filters):
                            h[0, f], h[1, f], h[2, f], h[3, f] = _a(row[s, f], row[s + 1, f])
                for j in range(4):  # then over its rows
                    for f in range(filters):
                        out[j, t, f], out[4 + j, t, f], out[8 + j, t, f], out[12 + j, t, f] = _a(half[0, j, f], half[1, j, f])


def output_gradient(g, ans, relu, th, tw):
    """g (n, H, W, F) -> (16, n * th * tw, F): the gradient through
    `transform_output` (A g A^T for every tile), g taken as zero where the
    relu's output `ans` was not positive if `relu`."""
    out = np.empty((16, g.shape[0] * th * tw, g.shape[3]), dtype=g.dtype)
    _output_gradient(g, ans, relu, th, tw, out)
    return out
