"""Dropout's masks drawn on every core, the same bits as on one.

Inverted dropout keeps a unit where `rng.random(dtype=float32) >= rate`; that
draw is a visible part of a CNN step (docs/speed.md), on one core, since a
Generator draws in sequence. NumPy makes a float32 from the top 24 bits of
a 32-bit word, and PCG64 (`default_rng`'s generator) yields its 64-bit
outputs as two such words, the low half first, keeping the high half for the
next draw (`has_uint32`). So the draw is a run of 64-bit outputs, and a copy
of the generator advanced to a block's first output (`PCG64.advance`, a few
multiplies) draws that block on another core. The mask then compares the
words themselves: (w >> 8) * 2^-24 >= rate exactly when w >= T * 2^8, with T
the least 24-bit integer that passes the same float32 comparison.

The generator is left in the state the single draw leaves it in, so every
seeded result stays the same. That rests on how NumPy draws float32s, which
its tests do not promise: the first use compares the split draw with
`rng.random` (mask and state after), and if they ever differ every draw is
made by `rng.random`. Any other generator, or one on a GPU, draws that way too.
"""

from __future__ import annotations

import functools
import math
import sys

import numpy as np

from . import parallel

# Below this many values a draw is made by `rng.random`: the copies and state
# reads of a split cost tens of microseconds.
_SPLIT_FROM = 1 << 16


def dropout_mask(rng, shape, rate, dtype=np.float32):
    """(rng.random(shape, dtype=float32) >= rate) * dtype(1 / (1 - rate)):
    zero where a unit is dropped, the inverted scale where it is kept."""
    scale = dtype(1 / (1 - rate))
    if math.prod(shape) >= _SPLIT_FROM and _splittable(rng):
        return _split_mask(rng, shape, rate, scale)
    return _one_draw_mask(rng, shape, rate, scale)


def _one_draw_mask(rng, shape, rate, scale):
    return (rng.random(shape, dtype=np.float32) >= rate) * scale


def _splittable(rng):
    return (
        isinstance(rng, np.random.Generator)
        and type(rng.bit_generator) is np.random.PCG64
        and _split_matches_numpy()
    )


@functools.cache
def _split_matches_numpy():
    """Whether `_split_mask` gives `rng.random`'s mask and leaves its state, on
    small draws that start with and without a kept half-word."""
    if sys.byteorder != "little":  # the halves' order in a uint32 view
        return False
    for drawn_before, size in ((0, 9), (1, 9), (3, 10), (1, 2), (0, 1)):
        serial, split = (np.random.Generator(np.random.PCG64(2024)) for _ in range(2))
        for rng in (serial, split):
            rng.random(drawn_before, dtype=np.float32)
        expected = _one_draw_mask(serial, (size,), 0.5, np.float32(2))
        mask = _split_mask(split, (size,), 0.5, np.float32(2), blocks=2)
        if not np.array_equal(mask, expected) or split.bit_generator.state != serial.bit_generator.state:
            return False
    return True


def _threshold(rate):
    """The least T in [0, 2^24] with float32(T * 2^-24) >= rate, compared as
    `rng.random(dtype=float32) >= rate` compares (a Python float as float32)."""
    low = min(max(math.floor(rate * 2**24) - 2, 0), 2**24)
    grid = np.arange(low, min(low + 6, 2**24 + 1)).astype(np.float32) * np.float32(2**-24)
    return low + int(np.count_nonzero(~(grid >= rate)))


def _split_mask(rng, shape, rate, scale, blocks=None):
    """`dropout_mask` for a PCG64 Generator, its outputs cut into `blocks`
    spans (default: one per worker thread), each drawn by its own copy."""
    generator = rng.bit_generator
    state = generator.state
    size = math.prod(shape)
    mask = np.empty(size, scale.dtype)
    threshold = _threshold(rate)
    first = 0  # values taken from the kept half-word
    if state["has_uint32"] and size:
        mask[0] = scale if state["uinteger"] >> 8 >= threshold else 0
        first = 1
    outputs = -(-(size - first) // 2)  # 64-bit outputs the rest needs
    blocks = blocks or parallel.workers()
    spans = parallel.spans(outputs, -(-outputs // blocks))

    def draw(span):
        start, stop = span
        copy = np.random.PCG64(0)
        copy.state = state
        words = copy.advance(start).random_raw(stop - start).view(np.uint32)
        begin = first + 2 * start
        part = mask[begin : min(begin + words.size, size)]
        if threshold == 2**24:  # a rate that rounds to 1 keeps nothing
            part[...] = 0
        else:
            np.multiply(words[: part.size] >= np.uint32(threshold << 8), scale, out=part)
        return copy, int(words[-1])  # the high half of the span's last output

    if spans:  # the last span's copy ends where the single draw would
        last_copy, last_high = parallel.map_blocks(draw, spans)[-1]
        state = last_copy.state
    else:
        last_high = state["uinteger"]
    state["has_uint32"], state["uinteger"] = (size - first) % 2, last_high
    generator.state = state
    return mask.reshape(shape)
