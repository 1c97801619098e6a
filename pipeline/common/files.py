"""Files written atomically (a file appears under its final name complete, or
not at all) and archives read safely (a hostile member refuses the archive)."""

from __future__ import annotations

import contextlib
import json
import os
import tarfile
from glob import escape as glob_escape
from pathlib import Path

from .errors import DataError, SoftlossError


@contextlib.contextmanager
def atomic_path(target):
    """Yield a temporary path beside `target` (same filesystem, so the rename is
    atomic); rename it into place if the block succeeds, delete it otherwise.
    An error of the file system that names no file (a full disk, a quota)
    becomes a SoftlossError naming `target`."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_orphans(target)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, target)
    except OSError as error:
        if error.filename is not None or error.strerror is None:
            raise
        raise SoftlossError(f"{target}: cannot write it: {error.strerror}") from None
    finally:
        tmp.unlink(missing_ok=True)


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _remove_orphans(target):
    """Delete the temporary files of `target` whose writer is gone (killed mid-write)."""
    for path in target.parent.glob(f".{glob_escape(target.name)}.*.tmp"):
        pid = path.name[len(target.name) + 2 : -len(".tmp")]
        if pid.isdigit() and not _alive(int(pid)):
            path.unlink(missing_ok=True)


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


def safe_members(archive: tarfile.TarFile, destination=".", name=None):
    """Every member of `archive` (called `name` in errors: an archive opened
    from a stream has none of its own), after tarfile's `data` filter has passed it.

    The filter rejects paths escaping the destination ('..'), links pointing
    outside it and device files; it would merely strip a leading '/', so
    absolute paths are refused here, as is anything but a regular file or a
    directory. A hostile archive is refused whole."""
    where = name or archive.name
    members = []
    for member in archive.getmembers():
        if member.name.startswith(("/", "\\")) or os.path.isabs(member.name):
            raise DataError(f"{where}: unsafe member {member.name!r} (absolute path); refusing the archive")
        try:
            tarfile.data_filter(member, destination)
        except tarfile.FilterError as error:
            raise DataError(
                f"{where}: unsafe member {member.name!r} ({error}); refusing the archive"
            ) from None
        if not (member.isfile() or member.isdir()):
            raise DataError(f"{where}: member {member.name!r} is not a regular file; refusing the archive")
        members.append(member)
    return members
