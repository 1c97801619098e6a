"""The thread pool (pipeline.kernels.parallel): blocks of work on every core give
the same bits as on one."""

import os
import subprocess
import sys
import threading

import numpy as np
import pytest

from pipeline.core import models
from pipeline.core.autodiff import value_and_grad
from pipeline.core.losses import LOSSES
from pipeline.core.primitives import dense
from pipeline.kernels import parallel


def test_spans_cover_the_range_evenly():
    assert parallel.spans(10, 4) == [(0, 4), (4, 7), (7, 10)]
    assert parallel.spans(3, 100) == [(0, 3)]
    assert parallel.spans(5, 0) == [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5)]
    with pytest.raises(ValueError, match="worker threads"):
        parallel.set_workers(0)


def _pooled_in_child():
    """Blocks dealt to the pool's threads: how many threads ran them, the
    results, and the threads the pool has."""
    ran = parallel.map_blocks(lambda span: (threading.get_ident(), span[1] - span[0]), parallel.spans(64, 8))
    return len({thread for thread, _ in ran}), [size for _, size in ran], parallel.workers()


def test_a_forked_child_runs_blocks_without_the_parents_pool():
    import multiprocessing

    parallel.set_workers(2)  # the threads restored after (conftest)
    assert _pooled_in_child() == (2, [8] * 8, 2)  # the parent's pool threads exist now
    context = multiprocessing.get_context("fork")
    with context.Pool(1) as pool:
        threads, sizes, workers = pool.apply_async(_pooled_in_child).get(timeout=60)
    # The child made a pool of its own, of as many threads as BLAS had, and used them all.
    assert sizes == [8] * 8 and workers == parallel._blas_threads and threads == min(workers, 8)


@pytest.mark.parametrize(
    "shape", [(128, 9216, 128), (9216, 128, 128), (128, 128, 9216), (100, 784, 10), (3, 5, 2)]
)
def test_blocked_matmul_equals_one_gemm_and_does_not_depend_on_threads(shape):
    rows, inner, columns = shape
    rng = np.random.default_rng(5)
    a = rng.standard_normal((rows, inner)).astype(np.float32)
    b = rng.standard_normal((inner, columns)).astype(np.float32)
    want = a.astype(np.float64) @ b.astype(np.float64)
    parallel.set_workers(1)
    one, transposed = dense.matmul(a, b), dense.matmul(b.T, a.T)
    assert one.dtype == np.float32
    np.testing.assert_allclose(one, want, rtol=0, atol=1e-6 * inner)
    np.testing.assert_allclose(transposed, want.T, rtol=0, atol=1e-6 * inner)
    parallel.set_workers(2)  # the threads restored after (conftest)
    np.testing.assert_array_equal(dense.matmul(a, b), one)
    np.testing.assert_array_equal(dense.matmul(b.T, a.T), transposed)


def test_the_pool_takes_as_many_threads_as_blas_had():

    code = (
        "import numpy; from threadpoolctl import threadpool_info; from pipeline.kernels import parallel\n"
        "def blas(): return [l['num_threads'] for l in threadpool_info() if l['user_api'] == 'blas']\n"
        "before = blas(); print(max(before), parallel.workers(), *blas())"
    )
    for threads in ("1", "2"):
        env = {**os.environ, "OPENBLAS_NUM_THREADS": threads}
        run = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        had, workers, *after = run.stdout.split()
        assert workers == had and set(after) == {"1"}
        assert int(had) == min(int(threads), os.cpu_count())  # OpenBLAS caps it at the cores


def test_a_cifar_cnn_training_step_is_the_same_on_one_and_two_threads():
    init, apply = models.build("cifar_cnn")
    params = init(np.random.default_rng(0), (32, 32, 3))
    data = np.random.default_rng(1)
    x, y = data.random((64, 32, 32, 3), dtype=np.float32), data.integers(0, 10, 64)

    def step():
        noise = np.random.default_rng(2)
        return value_and_grad(lambda p: LOSSES["ce"](apply(p, x, train=True, rng=noise), y))(params)

    parallel.set_workers(1)
    one = step()
    parallel.set_workers(2)  # the threads restored after (conftest)
    two, again = step(), step()
    for got in (two, again):
        assert got[0] == one[0]
        np.testing.assert_array_equal(_flat(got[1]), _flat(one[1]))


def _flat(grads):
    return np.concatenate([g.ravel() for layer in grads for g in layer])


def test_a_cifar_cnn_batch_has_the_same_gradients_whatever_the_cpus_cache(monkeypatch):
    """The block size once followed the L2 cache (four of them, at most 4 MiB:
    512 KiB to 4 MiB on the CPUs seen), and the kernel gradients with it (up
    to 6e-8 apart). Now a CPU of any cache gives the same bits."""
    from pipeline.common import machine
    from pipeline.core import settings

    init, apply = models.build("cifar_cnn")
    params = init(np.random.default_rng(0), (32, 32, 3))
    data = np.random.default_rng(1)
    x, y = data.random((32, 32, 32, 3), dtype=np.float32), data.integers(0, 10, 32)
    results = []
    for l2 in (
        128 << 10,
        256 << 10,
        512 << 10,
        1 << 20,
    ):  # blocks of 512 KiB, 1, 2 and 4 MiB, by the old rule
        monkeypatch.setattr(machine, "l2_cache_bytes", lambda *a, l2=l2: l2, raising=False)
        monkeypatch.setattr(settings, "l2_cache_bytes", lambda *a, l2=l2: l2, raising=False)
        with settings.SETTINGS.using(block_bytes=settings.Settings().block_bytes):
            noise = np.random.default_rng(2)
            results.append(
                value_and_grad(lambda p: LOSSES["ce"](apply(p, x, train=True, rng=noise), y))(params)
            )
    for loss, grads in results[1:]:
        assert loss == results[0][0]
        np.testing.assert_array_equal(_flat(grads), _flat(results[0][1]))
