"""The host machine as softloss reads it (pipeline.common.machine): the CPU's
name and the BLAS kernels."""

import platform

from pipeline.common import machine
from pipeline.core import backend


def test_the_cpu_backend_names_its_cpu_and_whether_it_has_avx512(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    core = "processor\t: {0}\nmodel name\t: AMD EPYC 7B12\nflags\t\t: fpu sse2 avx2 {1}\n\n"
    cpuinfo.write_text(core.format(0, "avx512f avx512bw") + core.format(1, "avx512f avx512bw"))
    assert machine.cpu_name(cpuinfo) == "AMD EPYC 7B12, with AVX-512"
    cpuinfo.write_text(core.format(0, "fma"))
    assert machine.cpu_name(cpuinfo) == "AMD EPYC 7B12, no AVX-512"
    assert machine.cpu_name(tmp_path / "absent") == (
        platform.processor() or platform.machine()
    )  # the platform's
    assert backend.NUMPY.device == f"CPU ({machine.cpu_name()})"


def test_the_blas_named_is_numpys_even_beside_scipys():
    import scipy.linalg  # noqa: F401  (loads SciPy's own OpenBLAS beside NumPy's)
    from threadpoolctl import threadpool_info

    named = machine.blas_kernel()
    blas = [lib for lib in threadpool_info() if lib["user_api"] == "blas"]
    ours = [lib for lib in blas if "numpy" in lib["filepath"]]
    assert ";" not in named and named.startswith(f"{ours[0]['internal_api']} {ours[0]['version']}")
