"""The F(4x4, 3x3) transforms (pipeline.kernels.winograd): compiled loops over
tiles, the bias, the relu and its mask fused in."""

from __future__ import annotations

import numpy as np

from .winograd_tiles import add_overhang, compiled, constants, gradient_block, input_block

# F(4x4, 3x3), interpolation points 0, +-1, +-2 and infinity:
#   B^T = [[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
#          [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]]
#   A^T = [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]]
# Each is split in two halves of rows that read five of the six inputs, so
# that a loop touches at most eight rows of memory.


# B^T rows 0, 1, 2 (from d0..d4) and 3, 4, 5 (from d1..d5)
@compiled
def _bt_low_4x4(d0, d1, d2, d3, d4, k):
    return k[4] * d0 - k[5] * d2 + d4, (d3 + d4) - k[4] * (d1 + d2), (d4 - d3) + k[4] * (d1 - d2)


@compiled
def _bt_high_4x4(d1, d2, d3, d4, d5, k):
    return (d4 - d2) + k[2] * (d3 - d1), (d4 - d2) - k[2] * (d3 - d1), k[4] * d1 - k[5] * d3 + d5


# B = (B^T)^T: entries 0, 2, 4 (from v0..v4) and 1, 3, 5 (from v1..v5)
@compiled
def _b_even_4x4(v0, v1, v2, v3, v4, k):
    return k[4] * v0, -k[5] * v0 - k[4] * (v1 + v2) - (v3 + v4), v0 + v1 + v2 + v3 + v4


@compiled
def _b_odd_4x4(v1, v2, v3, v4, v5, k):
    return k[4] * (v2 - v1 + v5) + k[2] * (v4 - v3), (v1 - v2) + k[2] * (v3 - v4) - k[5] * v5, v5


# A^T rows 0, 1 (from m0..m4) and 2, 3 (from m1..m5)
@compiled
def _at_low_4x4(m0, m1, m2, m3, m4, k):
    return m0 + m1 + m2 + m3 + m4, (m1 - m2) + k[2] * (m3 - m4)


@compiled
def _at_high_4x4(m1, m2, m3, m4, m5, k):
    return (m1 + m2) + k[4] * (m3 + m4), (m1 - m2) + k[8] * (m3 - m4) + m5


# A = (A^T)^T: entries 0, 1, 2 and 3, 4, 5 from u0..u3
@compiled
def _a_low_4x4(u0, u1, u2, u3):
    return u0, u0 + u1 + u2 + u3, u0 - u1 + u2 - u3


@compiled
def _a_high_4x4(u0, u1, u2, u3, k):
    return u0 + k[2] * u1 + k[4] * u2 + k[8] * u3, u0 - k[2] * u1 + k[4] * u2 - k[8] * u3, u3


@compiled
def transform_input(x, th, tw, out):
    k = constants(x.dtype)
    half = np.empty((6, 6, x.shape[3]), x.dtype)  # B^T over a tile's columns, row by row
    block = np.empty((6, 6, x.shape[3]), x.dtype)
    channels = x.shape[3]
    for n in range(x.shape[0]):
        for ti in range(th):
            for tj in range(tw):
                t = (n * th + ti) * tw + tj
                image, r, s = input_block(x, n, 4 * ti, 4 * tj, 6, block)
                for i in range(6):
                    row, h = image[r + i], half[i]
                    for ch in range(channels):
                        h[0, ch], h[1, ch], h[2, ch] = _bt_low_4x4(
                            row[s, ch], row[s + 1, ch], row[s + 2, ch], row[s + 3, ch], row[s + 4, ch], k
                        )
                for i in range(6):
                    row, h = image[r + i], half[i]
                    for ch in range(channels):
                        h[3, ch], h[4, ch], h[5, ch] = _bt_high_4x4(
                            row[s + 1, ch], row[s + 2, ch], row[s + 3, ch], row[s + 4, ch], row[s + 5, ch], k
                        )
                for j in range(6):  # then over its rows
                    for ch in range(channels):
                        out[j, t, ch], out[6 + j, t, ch], out[12 + j, t, ch] = _bt_low_4x4(
                            half[0, j, ch], half[1, j, ch], half[2, j, ch], half[3, j, ch], half[4, j, ch], k
                        )
                for j in range(6):
                    for ch in range(channels):
                        out[18 + j, t, ch], out[24 + j, t, ch], out[30 + j, t, ch] = _bt_high_4x4(
                            half[1, j, ch], half[2, j, ch], half[3, j, ch], half[4, j, ch], half[5, j, ch], k
                        )


@compiled
def input_gradient(d, th, tw, out):
    k = constants(out.dtype)
    channels = out.shape[3]
    half = np.empty((6, 6, channels), out.dtype)  # B over the 36 entries' rows
    block = np.empty((6, 6, channels), out.dtype)
    for n in range(out.shape[0]):
        for ti in range(th):
            for tj in range(tw):
                t = (n * th + ti) * tw + tj
                image, r, s, overhangs = gradient_block(out, n, 4 * ti, 4 * tj, 6, block)
                for j in range(6):
                    for ch in range(channels):
                        half[0, j, ch], half[2, j, ch], half[4, j, ch] = _b_even_4x4(
                            d[j, t, ch],
                            d[6 + j, t, ch],
                            d[12 + j, t, ch],
                            d[18 + j, t, ch],
                            d[24 + j, t, ch],
                            k,
                        )
                for j in range(6):
                    for ch in range(channels):
                        half[1, j, ch], half[3, j, ch], half[5, j, ch] = _b_odd_4x4(
                            d[6 + j, t, ch],
                            d[12 + j, t, ch],
                            d[18 + j, t, ch],
                            d[24 + j, t, ch],
                            d[30 + j, t, ch],
                            k,
                        )
                for i in range(6):  # then over their columns, added where the tile read
                    row, h = image[r + i], half[i]
                    for ch in range(channels):
                        v0, v2, v4 = _b_even_4x4(h[0, ch], h[1, ch], h[2, ch], h[3, ch], h[4, ch], k)
                        row[s, ch] += v0
                        row[s + 2, ch] += v2
                        row[s + 4, ch] += v4
                for i in range(6):
                    row, h = image[r + i], half[i]
                    for ch in range(channels):
                        v1, v3, v5 = _b_odd_4x4(h[1, ch], h[2, ch], h[3, ch], h[4, ch], h[5, ch], k)
                        row[s + 1, ch] += v1
                        row[s + 3, ch] += v3
                        row[s + 5, ch] += v5
                if overhangs:
                    add_overhang(block, out, n, 4 * ti, 4 * tj)


@compiled
def transform_output(m, bias, relu, th, tw, out):
    k = constants(out.dtype)
    height, width, filters = out.shape[1], out.shape[2], out.shape[3]
    zero = out.dtype.type(0)
    half = np.empty((4, 6, filters), m.dtype)  # A^T over the 36 entries' rows
    tile = np.empty((4, 4, filters), m.dtype)  # then over their columns
    for n in range(out.shape[0]):
        for ti in range(th):
            for tj in range(tw):
                t, r, s = (n * th + ti) * tw + tj, 4 * ti, 4 * tj
                for j in range(6):
                    for f in range(filters):
                        half[0, j, f], half[1, j, f] = _at_low_4x4(
                            m[j, t, f], m[6 + j, t, f], m[12 + j, t, f], m[18 + j, t, f], m[24 + j, t, f], k
                        )
                for j in range(6):
                    for f in range(filters):
                        half[2, j, f], half[3, j, f] = _at_high_4x4(
                            m[6 + j, t, f],
                            m[12 + j, t, f],
                            m[18 + j, t, f],
                            m[24 + j, t, f],
                            m[30 + j, t, f],
                            k,
                        )
                for a in range(4):
                    h, y = half[a], tile[a]
                    for f in range(filters):
                        y[0, f], y[1, f] = _at_low_4x4(h[0, f], h[1, f], h[2, f], h[3, f], h[4, f], k)
                for a in range(4):
                    h, y = half[a], tile[a]
                    for f in range(filters):
                        y[2, f], y[3, f] = _at_high_4x4(h[1, f], h[2, f], h[3, f], h[4, f], h[5, f], k)
                # the tile's outputs, plus the bias, through the relu; a grid
                # overhanging the output drops what falls outside
                for a in range(min(4, height - r)):
                    for b in range(min(4, width - s)):
                        y, o = tile[a, b], out[n, r + a, s + b]
                        if relu:
                            for f in range(filters):
                                o[f] = max(y[f] + bias[f], zero)
                        else:
                            for f in range(filters):
                                o[f] = y[f] + bias[f]


@compiled
def output_gradient(g, ans, relu, th, tw, out):
    k = constants(g.dtype)
    height, width, filters = g.shape[1], g.shape[2], g.shape[3]
    zero = g.dtype.type(0)
    tile = np.zeros((4, 4, filters), g.dtype)  # the tile's cotangent before the fused relu
    half = np.empty((4, 6, filters), g.dtype)  # A over the tile's columns, row by row
    for n in range(g.shape[0]):
        for ti in range(th):
            for tj in range(tw):
                t, r, s = (n * th + ti) * tw + tj, 4 * ti, 4 * tj
                rows, columns = min(4, height - r), min(4, width - s)
                if rows < 4 or columns < 4:
                    tile[...] = 0  # a grid overhanging the output: zeros there
                for a in range(rows):
                    for b in range(columns):
                        y, kept, c = g[n, r + a, s + b], ans[n, r + a, s + b], tile[a, b]
                        if relu:
                            for f in range(filters):
                                c[f] = y[f] if kept[f] > 0 else zero
                        else:
                            for f in range(filters):
                                c[f] = y[f]
                for a in range(4):
                    c, h = tile[a], half[a]
                    for f in range(filters):
                        h[0, f], h[1, f], h[2, f] = _a_low_4x4(c[0, f], c[1, f], c[2, f], c[3, f])
                for a in range(4):
                    c, h = tile[a], half[a]
                    for f in range(filters):
                        h[3, f], h[4, f], h[5, f] = _a_high_4x4(c[0, f], c[1, f], c[2, f], c[3, f], k)
                for j in range(6):  # then over its rows
                    for f in range(filters):
                        out[j, t, f], out[6 + j, t, f], out[12 + j, t, f] = _a_low_4x4(
                            half[0, j, f], half[1, j, f], half[2, j, f], half[3, j, f]
                        )
                for j in range(6):
                    for f in range(filters):
                        out[18 + j, t, f], out[24 + j, t, f], out[30 + j, t, f] = _a_high_4x4(
                            half[0, j, f], half[1, j, f], half[2, j, f], half[3, j, f], k
                        )
