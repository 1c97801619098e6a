"""Blocks of images for the layer primitives: on the CPU, blocks that stay in
cache, dealt to every core (pipeline.kernels.parallel); on a GPU, where each
block costs kernel launches, the blocks run in order from one thread."""

from __future__ import annotations

import numpy as np

from ...kernels import parallel

MIN_BLOCKS = 8


def on_blocks(xp, work, spans):
    """work(span) for every span: on every core for NumPy; in order from this
    thread for a GPU, which queues its kernels from one thread."""
    if xp is np:
        return parallel.map_blocks(work, spans)
    return [work(span) for span in spans]


def image_blocks(n_images, bytes_per_image, budget):
    """Spans of images within `budget` bytes, and at least MIN_BLOCKS of them
    where there are enough images, so that every core gets work: a layer of
    few channels fits a whole batch in one budget."""
    fit = budget // max(1, bytes_per_image)
    return parallel.spans(n_images, min(fit, -(-n_images // MIN_BLOCKS)))


def sum_in_order(arrays):
    """The sum of per-block partial results, added in block order: the same
    bits whatever the number of threads."""
    arrays = iter(arrays)
    total = next(arrays).copy()
    for array in arrays:
        total += array
    return total
