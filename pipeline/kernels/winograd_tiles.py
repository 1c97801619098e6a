"""The pieces every Winograd transform shares (pipeline.kernels.winograd): a
tile's input block, read where it overhangs the image through a zeroed
buffer, its input gradient added back the same way, and constants in the
array's own float type. Compiled (numba), no fast-math."""

from __future__ import annotations

import numba

compiled = numba.njit(nogil=True, cache=True)


# An overhanging tile's block is copied in and added back by loops over
# channels, which LLVM vectorizes: as slice expressions numba walks every
# element through a generic indexer, and such a tile cost several whole ones.
@compiled
def input_block(x, n, r, s, side, block):
    """Image n of x and the corner (r, s) of a tile's side x side input block;
    for a tile that overhangs x, the block copied into `block` with zeros
    beyond x, and its corner (0, 0)."""
    rows, columns = min(side, x.shape[1] - r), min(side, x.shape[2] - s)
    if rows == side and columns == side:
        return x[n], r, s
    block[...] = 0
    for i in range(rows):
        for j in range(columns):
            to, source = block[i, j], x[n, r + i, s + j]
            for ch in range(block.shape[2]):
                to[ch] = source[ch]
    return block, 0, 0


@compiled
def gradient_block(out, n, r, s, side, block):
    """Where a tile adds its input gradient: image n of `out` and the corner
    (r, s); for a tile that overhangs `out`, `block` zeroed and (0, 0), for
    `add_overhang` to add back. Last: whether it overhangs."""
    if r + side <= out.shape[1] and s + side <= out.shape[2]:
        return out[n], r, s, False
    block[...] = 0
    return block, 0, 0, True


@compiled
def add_overhang(block, out, n, r, s):
    """Adds a tile's input gradient, gathered in `block`, where its block lay in
    image n of `out`: the counterpart of `input_block`."""
    rows, columns = min(block.shape[0], out.shape[1] - r), min(block.shape[1], out.shape[2] - s)
    for i in range(rows):
        for j in range(columns):
            to, source = out[n, r + i, s + j], block[i, j]
            for ch in range(block.shape[2]):
                to[ch] += source[ch]


@compiled
def constants(dtype):
    """0..8 in `dtype`: a float32 loop times a Python int computes in float64."""
    t = dtype.type
    return t(0), t(1), t(2), t(3), t(4), t(5), t(6), t(7), t(8)
