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
