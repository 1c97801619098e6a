"""One trainer per run directory: an OS lock (flock) on its `.trainer.lock`,
which records the holder's PID. The kernel releases it when the holder's
process ends however it ends, `kill -9` included, so a stale lock cannot
outlive its trainer; a second trainer stops at once, naming the first."""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from ..common.errors import SoftlossError

LOCK = ".trainer.lock"


@contextlib.contextmanager
def held(run_dir):
    """Hold `run_dir` for this process while inside; SoftlossError naming the
    holder's PID if another trainer holds it. A directory made here that holds
    nothing else at the end is removed again."""
    run_dir = Path(run_dir)
    made = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK
    handle = open(path, "a+")  # noqa: SIM115 (open while the lock is held: across the yield)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise SoftlossError(
            f"{run_dir}: another trainer (PID {holder}) is training this run; let it finish, "
            f"or stop it (kill {holder}) and run again"
        ) from None
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield
    finally:
        if made and [p.name for p in run_dir.iterdir()] == [LOCK]:
            path.unlink()
            run_dir.rmdir()
        handle.close()
