"""What moves a run's numbers beyond its config and its data: the CPU
settings of the primitives (pipeline.core.settings), the BLAS and the kernels
it chose, and the versions of the packages that compute; or the GPU and CuPy.
Recorded in every status.json, kept in the checkpoint, and compared when a run
resumes: a run continued under other numerics would mix two computations."""

from __future__ import annotations

from dataclasses import asdict
from importlib import metadata

from ..common.machine import blas_kernel
from ..core.settings import SETTINGS

PACKAGES = ("numpy", "autograd", "numba")


def _version(package):
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def numerics(backend):
    """The facts that move the numbers of a run computed on `backend`."""
    facts = {"versions": {name: _version(name) for name in PACKAGES}, "device": backend.device}
    if backend.on_device:
        facts["versions"]["cupy"] = getattr(backend.xp, "__version__", None)
    else:
        facts.update(settings=asdict(SETTINGS), blas=blas_kernel())
    return facts


def differences(before, now):
    """'block_bytes 2097152 -> 4194304, numpy 2.4.5 -> 2.4.6': what differs between two `numerics`."""

    def flat(facts, prefix=""):
        for key, value in sorted((facts or {}).items()):
            if isinstance(value, dict):
                yield from flat(value, f"{key}.")
            else:
                yield f"{prefix}{key}", value

    old, new = dict(flat(before)), dict(flat(now))

    def shown(value):
        return "not recorded" if value is None else value

    return ", ".join(
        f"{key.split('.')[-1]} {shown(old.get(key))} -> {shown(new.get(key))}"
        for key in sorted(set(old) | set(new))
        if old.get(key) != new.get(key)
    )
