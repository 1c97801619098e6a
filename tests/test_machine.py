"""The host machine as softloss reads it (pipeline.common.machine): the CPU's
name, its L2 cache and the block size that follows, the BLAS kernels."""


import pytest

from pipeline.common import machine
from pipeline.core import backend
from pipeline.core.settings import SETTINGS


def test_blocks_are_4_mib_or_four_l2_caches_where_that_is_less(tmp_path):
    def caches(*entries):
        root = tmp_path / str(len(list(tmp_path.iterdir())))
        for i, (level, kind, size) in enumerate(entries):
            (root / f"index{i}").mkdir(parents=True)
            for name, text in (("level", level), ("type", kind), ("size", size)):
                (root / f"index{i}" / name).write_text(text + "\n")
        return root

    l1 = ("1", "Data", "32K"), ("1", "Instruction", "32K")
    assert machine.l2_cache_bytes(caches(*l1, ("2", "Unified", "512K"), ("3", "Unified", "16384K"))) == 512 << 10
    assert machine.l2_cache_bytes(caches(("2", "Instruction", "64K"), ("2", "Unified", "2M"))) == 2 << 20
    assert machine.l2_cache_bytes(caches(*l1)) is None and machine.l2_cache_bytes(tmp_path / "absent") is None
    assert machine.l2_cache_bytes(caches(("2", "Unified", "unknown"))) is None
    l2 = machine.l2_cache_bytes()
    assert SETTINGS.block_bytes == (min(4 << 20, 4 * l2) if l2 else 4 << 20)


def test_the_cpu_backend_names_its_cpu_and_whether_it_has_avx512(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    core = "processor\t: {0}\nmodel name\t: AMD EPYC 7B12\nflags\t\t: fpu sse2 avx2 {1}\n\n"
    cpuinfo.write_text(core.format(0, "avx512f avx512bw") + core.format(1, "avx512f avx512bw"))
    assert machine.cpu_name(cpuinfo) == "AMD EPYC 7B12, with AVX-512"
    cpuinfo.write_text(core.format(0, "fma"))
    assert machine.cpu_name(cpuinfo) == "AMD EPYC 7B12, no AVX-512"
    assert machine.cpu_name(tmp_path / "absent")  # the platform's name for it instead
    assert backend.NUMPY.device == f"CPU ({machine.cpu_name()})"


def test_the_blas_named_is_numpys_even_beside_scipys():
    scipy_linalg = pytest.importorskip("scipy.linalg")  # loads SciPy's own OpenBLAS beside NumPy's
    from threadpoolctl import threadpool_info

    assert scipy_linalg is not None
    named = machine.blas_kernel()
    blas = [lib for lib in threadpool_info() if lib["user_api"] == "blas"]
    ours = [lib for lib in blas if "numpy" in lib["filepath"]]
    assert ";" not in named and named.startswith(f"{ours[0]['internal_api']} {ours[0]['version']}")
