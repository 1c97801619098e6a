"""Atomic writes: a file appears under its final name complete, or not at all."""
from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path


@contextlib.contextmanager
def atomic_path(target):
    """Yield a temporary path beside `target` (same filesystem, so the rename is
    atomic); rename it into place if the block succeeds, delete it otherwise."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def remove_stale_temporaries(directory):
    """Delete the temporary files of `atomic_path` that a killed process left in
    `directory` (its final-name files are whole either way); returns their names."""
    stale = [p for p in Path(directory).glob(".*.*.tmp") if not p.name.endswith(f".{os.getpid()}.tmp")]
    for path in stale:
        path.unlink(missing_ok=True)
    return sorted(p.name for p in stale)


def write_atomic(path, write):
    """Call `write(binary_file)` on a temporary file, sync it, then rename it to `path`."""
    with atomic_path(path) as tmp, open(tmp, "wb") as out:
        write(out)
        out.flush()
        os.fsync(out.fileno())


def write_json(path, obj):
    write_atomic(path, lambda out: out.write((json.dumps(obj, indent=2, sort_keys=True) + "\n").encode()))
