"""The F(2x2, 3x3) transforms (pipeline.kernels.winograd): compiled loops over
tiles, the bias, the relu and its mask fused in."""

from __future__ import annotations

import numpy as np

from .winograd_tiles import add_overhang, compiled, gradient_block, input_block

# F(2x2, 3x3). B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]],
# A^T = [[1, 1, 1, 0], [0, 1, -1, -1]].


@compiled
def _b_transpose_2x2(d0, d1, d2, d3):
    """sum_r B^T[i, r] d_r, i = 0..3."""
    return d0 - d2, d1 + d2, d2 - d1, d1 - d3


@compiled
def _b_2x2(v0, v1, v2, v3):
    """sum_i B^T[i, r] v_i, r = 0..3: the transpose of `_b_transpose_2x2`."""
    return v0, v1 - v2 + v3, v2 + v1 - v0, -v3


@compiled
def _a_transpose_2x2(m0, m1, m2, m3):
    """sum_i A^T[a, i] m_i, a = 0, 1."""
    return m0 + m1 + m2, m1 - m2 - m3


@compiled
def _a_2x2(u0, u1):
    """sum_a A^T[a, i] u_a, i = 0..3: the transpose of `_a_transpose_2x2`."""
    return u0, u0 + u1, u0 - u1, -u1


@compiled
def transform_input(x, th, tw, out):
    half = np.empty((4, 4, x.shape[3]), x.dtype)  # B^T over a tile's columns, row by row
    block = np.empty((4, 4, x.shape[3]), x.dtype)
    for n in range(x.shape[0]):
        for ti in range(th):
            for tj in range(tw):
                t = (n * th + ti) * tw + tj
                image, r, s = input_block(x, n, 2 * ti, 2 * tj, 4, block)
                for i in range(4):
                    row, h = image[r + i], half[i]
                    for ch in range(x.shape[3]):
                        h[0, ch], h[1, ch], h[2, ch], h[3, ch] = _b_transpose_2x2(
                            row[s, ch], row[s + 1, ch], row[s + 2, ch], row[s + 3, ch]
                        )
                for j in range(4):  # then over its rows
                    for ch in range(x.shape[3]):
                        out[j, t, ch], out[4 + j, t, ch], out[8 + j, t, ch], out[12 + j, t, ch] = (
                            _b_transpose_2x2(half[0, j, ch], half[1, j, ch], half[2, j, ch], half[3, j, ch])
                        )


@compiled
def input_gradient(d, th, tw, out):
    half = np.empty((4, 4, out.shape[3]), out.dtype)  # B over the 16 entries' rows
    block = np.empty((4, 4, out.shape[3]), out.dtype)
    for n in range(out.shape[0]):
        for ti in range(th):
            for tj in range(tw):
                t = (n * th + ti) * tw + tj
                image, r, s, overhangs = gradient_block(out, n, 2 * ti, 2 * tj, 4, block)
                for j in range(4):
                    for ch in range(out.shape[3]):
                        half[0, j, ch], half[1, j, ch], half[2, j, ch], half[3, j, ch] = _b_2x2(
                            d[j, t, ch], d[4 + j, t, ch], d[8 + j, t, ch], d[12 + j, t, ch]
                        )
                for i in range(4):  # then over their columns, added where the tile read
                    row, h = image[r + i], half[i]
                    for ch in range(out.shape[3]):
                        v0, v1, v2, v3 = _b_2x2(h[0, ch], h[1, ch], h[2, ch], h[3, ch])
                        row[s, ch] += v0
                        row[s + 1, ch] += v1
                        row[s + 2, ch] += v2
                        row[s + 3, ch] += v3
                if overhangs:
                    add_overhang(block, out, n, 2 * ti, 2 * tj)


@compiled
def transform_output(m, bias, relu, th, tw, out):
    height, width, filters = out.shape[1], out.shape[2], out.shape[3]
    zero = out.dtype.type(0)
    half = np.empty((2, 4, filters), m.dtype)  # A^T over the 16 entries' rows
    for n in range(out.shape[0]):
        for ti in range(th):
            for tj in range(tw):
                t, r, s = (n * th + ti) * tw + tj, 2 * ti, 2 * tj
                for j in range(4):
                    for f in range(filters):
                        half[0, j, f], half[1, j, f] = _a_transpose_2x2(
                            m[j, t, f], m[4 + j, t, f], m[8 + j, t, f], m[12 + j, t, f]
                        )
                # then over their columns; a grid overhanging an odd size drops its last row or column
                columns = min(2, width - s)
                for a in range(min(2, height - r)):
                    row, h = out[n, r + a], half[a]
                    if columns == 2:
                        for f in range(filters):
                            left, right = _a_transpose_2x2(h[0, f], h[1, f], h[2, f], h[3, f])
                            row[s, f], row[s + 1, f] = left + bias[f], right + bias[f]
                    else:
                        for f in range(filters):
                            row[s, f] = _a_transpose_2x2(h[0, f], h[1, f], h[2, f], h[3, f])[0] + bias[f]
                    if relu:
                        written = row[s : s + columns].ravel()
                        for q in range(written.size):
                            written[q] = max(written[q], zero)


@compiled
def output_gradient(g, ans, relu, th, tw, out):
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
                            h[0, f], h[1, f], h[2, f], h[3, f] = _a_2x2(left, zero)
                    elif relu:  # the cotangent before the fused relu
                        for f in range(filters):
                            left = row[s, f] if kept[s, f] > 0 else zero
                            right = row[s + 1, f] if kept[s + 1, f] > 0 else zero
                            h[0, f], h[1, f], h[2, f], h[3, f] = _a_2x2(left, right)
                    else:
                        for f in range(filters):
                            h[0, f], h[1, f], h[2, f], h[3, f] = _a_2x2(row[s, f], row[s + 1, f])
                for j in range(4):  # then over its rows
                    for f in range(filters):
                        out[j, t, f], out[4 + j, t, f], out[8 + j, t, f], out[12 + j, t, f] = _a_2x2(
                            half[0, j, f], half[1, j, f]
                        )
