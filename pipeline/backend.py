"""Array-module dispatch: one code path for NumPy on the CPU and CuPy on a GPU.

Primitives ask `array_module(x)` for the module that owns their input instead of
importing NumPy directly, so the same forward and backward code runs on both.
"""
from __future__ import annotations

import numpy as np

from autograd.tracer import getval


def array_module(*arrays):
    """Return `cupy` if any argument is a CuPy array (boxed or not), else `numpy`."""
    for a in arrays:
        a = getval(a)
        if type(a).__module__.split(".", 1)[0] == "cupy":
            import cupy

            return cupy
    return np


def as_strided(x, shape, strides):
    """`as_strided` of whichever module owns `x` (a view: no copy)."""
    return array_module(x).lib.stride_tricks.as_strided(x, shape=shape, strides=strides)


def reuse_freed_memory():
    """Ask glibc's malloc to recycle large freed blocks instead of returning them.

    A training step allocates and frees the same few dozen multi-megabyte
    arrays every time. By default glibc hands blocks above a (dynamic) mmap
    threshold back to the kernel and trims the heap, so each step faults in
    fresh zeroed pages again: thousands of page faults, a sizeable share of a
    CNN step on a small machine. Keeping blocks up to 32 MiB on the heap and
    never trimming it cuts that to a few hundred. Process-wide, so it is called
    by the command-line entry points, not at import. Returns True if applied.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):  # not glibc: nothing to tune
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(mallopt(m_mmap_threshold, 32 << 20)) and bool(mallopt(m_trim_threshold, 2**31 - 1))
