"""Array backends: NumPy on the CPU, CuPy on a GPU, through the same code.

Primitives ask `array_module(x)` for the module that owns their input instead
of importing NumPy directly, so the same forward and backward code runs on
both. `resolve("auto" | "numpy" | "cupy")` picks a `Backend`: the array module,
a description of the device, transfers to and from it, and the device's
seeded random generator (dropout masks are drawn where they are used).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

import numpy as np

from ..common.errors import SoftlossError
from ..common.machine import cpu_name
from . import autograd_device, tree

BACKENDS = ("auto", "numpy", "cupy")


def array_module(*arrays):
    """The array module of the first device array among `arrays` (boxed or not), else NumPy."""
    for a in arrays:
        module = autograd_device.module_of(a)
        if module is not np:
            return module
    return np


def as_strided(x, shape, strides):
    """`as_strided` of whichever module owns `x` (a view: no copy)."""
    return array_module(x).lib.stride_tricks.as_strided(x, shape=shape, strides=strides)


@dataclass(frozen=True)
class Backend:
    name: str  # "numpy", "cupy", or a test's stand-in
    xp: ModuleType
    device: str  # what runs the arithmetic, for logs and status files
    memory_bytes: int | None = None  # free device memory when resolved (None: host memory)

    @property
    def on_device(self):
        return self.xp is not np

    def to_device(self, arrays):
        """A tree of host arrays as arrays of this backend (no copy for NumPy)."""
        if not self.on_device:
            return arrays
        return tree.rebuild(arrays, [self.xp.asarray(a) for a in tree.leaves(arrays)])

    def to_host(self, arrays):
        """A tree of this backend's arrays as NumPy arrays."""
        if not self.on_device:
            return arrays
        return tree.rebuild(arrays, [self.xp.asnumpy(a) for a in tree.leaves(arrays)])

    def noise_rng(self, seed, epoch):
        """The device's generator for dropout in one epoch, seeded by (seed, epoch)
        so that a run resumed at an epoch boundary draws the same masks
        (CuPy's generator states cannot be saved)."""
        return self.xp.random.default_rng([seed, 2, epoch])

    def synchronize(self):
        """Wait for the work queued on the device (for timing); no-op on the CPU."""
        cuda = getattr(self.xp, "cuda", None)
        if self.on_device and cuda is not None:
            cuda.get_current_stream().synchronize()

    def fits(self, nbytes, share=0.25):
        """Whether `nbytes` fit in `share` of the device memory free at start."""
        return self.memory_bytes is None or nbytes <= share * self.memory_bytes


# The CPU named: wall times in status files and the report compare only on one kind.
NUMPY = Backend("numpy", np, f"CPU ({cpu_name()})")


def device_backend(xp, name, device, memory_bytes=None):
    """A Backend for array module `xp` (CuPy, or a test's stand-in); makes
    autograd trace its arrays."""
    autograd_device.enable(xp)
    return Backend(name, xp, device, memory_bytes)


def _cupy_backend():
    """The CuPy backend, or SoftlossError saying why there is none."""
    try:
        import cupy
    except ImportError as error:
        raise SoftlossError(
            f"backend cupy: CuPy is not installed ({error}); "
            "install the cupy-cudaXXx wheel matching your CUDA driver"
        ) from None
    try:
        count = cupy.cuda.runtime.getDeviceCount()
        if count < 1:
            raise SoftlossError("backend cupy: CuPy sees no CUDA GPU")
        device = cupy.cuda.Device()
        name = cupy.cuda.runtime.getDeviceProperties(device.id)["name"]
        free, _ = device.mem_info
    except SoftlossError:
        raise
    except Exception as error:  # CUDARuntimeError and friends: no driver, no device
        raise SoftlossError(f"backend cupy: no usable CUDA GPU ({type(error).__name__}: {error})") from None
    name = name.decode() if isinstance(name, bytes) else str(name)
    return device_backend(cupy, "cupy", f"{name} (GPU {device.id})", free)


def resolve(choice="auto", log=None):
    """The Backend for `choice`: a Backend passes through; "numpy"; "cupy"
    (an error if CuPy or a GPU is missing); "auto" (CuPy when it imports and
    sees a GPU, else NumPy)."""
    if isinstance(choice, Backend):
        return choice
    if choice not in BACKENDS:
        raise SoftlossError(f"backend must be one of {', '.join(BACKENDS)}, got {choice!r}")
    if choice == "numpy":
        return NUMPY
    if choice == "cupy":
        return _cupy_backend()
    try:
        return _cupy_backend()
    except SoftlossError as why:
        if log:
            log(f"backend auto: using NumPy on the CPU ({why})")
        return NUMPY
