"""How the CPU computes: the algorithm switches of the primitives and the
optimizer, in one object that they read and that the bench and the tests set.

A GPU always runs the NumPy-expression forms; each compiled form gives the
same bits as its NumPy form, and the NumPy forms run on the CPU too when
chosen here, for the tests to compare and `bench --compare` to time.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, fields

CHOICES = {
    # "auto": Winograd for 3x3 layers of at least `winograd_min_channels` input
    # channels, in the tiling of fewer products, im2col + GEMM with a compiled
    # kernel gradient for thinner ones (their GEMMs would have an inner
    # dimension of 1 or 3); the others force one way for every 3x3 layer.
    "convolution": ("auto", "direct", "winograd", "winograd2x2", "winograd4x4"),
    "pooling": ("compiled", "quadrants"),  # compiled loops, or passes over the four quadrants
    "cross_entropy": ("compiled", "numpy"),  # compiled row loops, or NumPy's passes
    "optimizer_update": ("compiled", "numpy"),  # one compiled loop per rule, or NumPy expressions
}


# Blocks of images small enough to stay in cache between the copy or transform
# that writes them and the GEMM that reads them. Fixed, not read off the CPU's
# caches: a convolution's kernel gradient is a sum over blocks, so another
# block size gives other bits, and a seed must give the same run on any CPU
# with the same BLAS kernels (docs/speed.md: what it costs a small cache).
BLOCK_BYTES = 4 << 20


@dataclass
class Settings:
    convolution: str = "auto"
    pooling: str = "compiled"
    cross_entropy: str = "compiled"
    optimizer_update: str = "compiled"
    block_bytes: int = BLOCK_BYTES
    winograd_min_channels: int = 16

    def set(self, **values):
        """Change settings by name, each checked against its choices."""
        known = {f.name for f in fields(self)}
        for name, value in values.items():
            if name not in known:
                raise ValueError(f"no CPU setting {name!r}; the settings are {', '.join(sorted(known))}")
            if name in CHOICES and value not in CHOICES[name]:
                raise ValueError(f"{name} {value!r} is not one of {', '.join(CHOICES[name])}")
            if name not in CHOICES and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")
            setattr(self, name, value)

    @contextlib.contextmanager
    def using(self, **values):
        """The settings changed inside a `with` block, restored after it."""
        before = {name: getattr(self, name) for name in values}
        self.set(**values)
        try:
            yield self
        finally:
            self.set(**before)


SETTINGS = Settings()
