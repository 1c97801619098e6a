"""Blocks of a primitive's work on every core of the CPU.

The convolution, pooling and dense primitives cut their work into blocks (of
images, or along a GEMM's longest dimension); half of a training step is
memory-bound NumPy work (copies, transforms, masks) that would run on one core
while OpenBLAS threads only the GEMMs. Here each block runs whole on one
thread, the calling thread and a small pool's sharing them out (NumPy releases
the GIL in ufuncs, copies and BLAS calls), and OpenBLAS runs single-threaded:
softloss takes over its threads, as many as it had (OPENBLAS_NUM_THREADS and
the like, else the cores), when a primitive first needs them.

Results are independent of the number of threads and of the machine's caches:
the blocks are fixed by the data's shape and fixed sizes alone
(pipeline.core.settings), every BLAS call is single-threaded whatever the
thread count, and callers combine per-block partial sums in block order.
"""

from __future__ import annotations

import itertools
import os
from concurrent.futures import ThreadPoolExecutor

_blas_limit = None  # keeps BLAS single-threaded while it lives
_blas_threads = None  # the thread count BLAS had before
_pool = None
_workers = None


def _take_over_blas_threads():
    """Set BLAS to one thread, once; returns the thread count it had."""
    global _blas_limit, _blas_threads
    if _blas_limit is None:
        import numpy  # noqa: F401  (loads the BLAS whose threads are taken over)
        from threadpoolctl import threadpool_info, threadpool_limits  # not needed by a GPU run

        counts = [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]
        _blas_threads = max(counts, default=1)
        _blas_limit = threadpool_limits(limits=1, user_api="blas")
    return _blas_threads


def set_workers(count=None):
    """Run blocks on `count` threads; None: as many as BLAS had."""
    global _pool, _workers
    available = _take_over_blas_threads()
    count = available if count is None else int(count)
    if count < 1:
        raise ValueError(f"worker threads must be >= 1, got {count}")
    if _pool is not None:
        _pool.shutdown()
    _workers = count
    _pool = ThreadPoolExecutor(count - 1, thread_name_prefix="softloss-block") if count > 1 else None


def _forget_pool():
    """In a forked child the pool's threads do not exist: start over there."""
    global _pool, _workers
    _pool, _workers = None, None


os.register_at_fork(after_in_child=_forget_pool)


def workers():
    if _workers is None:
        set_workers()
    return _workers


def map_blocks(work, spans):
    """[work(span) for span in spans], the spans dealt round-robin to the
    calling thread and the pool's, one task per thread (a task per span would
    cost a future and a wake-up each)."""
    count = workers()
    if count == 1 or len(spans) < 2:
        return [work(span) for span in spans]
    results = [None] * len(spans)

    def run(first):
        for i in range(first, len(spans), count):
            results[i] = work(spans[i])

    helpers = [_pool.submit(run, first) for first in range(1, min(count, len(spans)))]
    try:
        run(0)
    finally:  # never return, or raise, while a helper still writes
        for helper in helpers:
            helper.exception()
    for helper in helpers:
        helper.result()
    return results


def spans(count, size):
    """[(start, stop)] cutting range(count) into pieces of at most `size`,
    evened out so that no piece is much smaller than the others."""
    pieces = -(-count // max(1, size))
    if pieces == 0:
        return []
    base, extra = divmod(count, pieces)
    bounds = [0]
    for i in range(pieces):
        bounds.append(bounds[-1] + base + (i < extra))
    return list(itertools.pairwise(bounds))
