"""The host machine: what runs a CPU job, named once for status files, the
report and the bench (the CPU, the BLAS and its kernels), and
the process-wide memory setting the command line applies."""

from __future__ import annotations

import platform
from pathlib import Path


def cpu_name(cpuinfo=Path("/proc/cpuinfo")):
    """The CPU's model name and whether it has AVX-512 (PyTorch's oneDNN gains
    more from it than OpenBLAS does, so speeds differ between CPU kinds)."""
    try:
        info = cpuinfo.read_text()
    except OSError:
        return platform.processor() or platform.machine()
    names = [line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")]
    avx512 = " avx512f" in info.replace("\t", " ")
    return f"{names[0] if names else platform.machine()}, {'with' if avx512 else 'no'} AVX-512"


def blas_kernel():
    """The BLAS NumPy runs and the kernels it chose for this CPU, as threadpoolctl
    reports them ("openblas 0.3.31, Haswell kernels"): OPENBLAS_CORETYPE can force
    older kernels than the CPU has, and they set the speed (and a float's last bits).
    NumPy's own where another package (SciPy) has loaded a BLAS of its own too."""
    import numpy
    from threadpoolctl import threadpool_info

    found = [lib for lib in threadpool_info() if lib["user_api"] == "blas"]
    home = Path(numpy.__file__).parent
    numpys = [
        lib
        for lib in found
        if Path(lib["filepath"]).parent.name == f"{home.name}.libs"
        or Path(lib["filepath"]).is_relative_to(home)
    ]
    return (
        "; ".join(
            f"{lib['internal_api']} {lib['version']}"
            + (f", {lib['architecture']} kernels" if lib.get("architecture") else "")
            for lib in numpys or found
        )
        or "unknown"
    )


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
