"""Download dataset files: verified, atomic, resumable, offline-capable.

For each file of a dataset: a file already in the output directory that passes
its checksum is kept. Otherwise the sources are tried in order (mirrors from
the command line or config, then `SOFTLOSS_MIRROR`, then the repository's own
copy in `data/raw/vendored/` for a vendored dataset, then the official URLs and
public mirrors of `pipeline.datasets`). A source is a local directory or an
http(s)/file URL. The vendored copy is a source and never a target: Snakemake
deletes a job's outputs before it reruns it (`--forceall`), and a file copied
from it comes back offline. A download streams into a hidden `.part` file
beside the target, with a progress bar and a socket timeout; transient failures (timeouts,
dropped connections, HTTP 5xx/408/429) are retried with exponential backoff,
resuming with an HTTP Range request where the server allows it. Only a file
whose checksum matches is renamed into place, so nothing partial or corrupt
ever sits under the final name.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import http.client
import os
import shutil
import socket
import time
import urllib.error
import urllib.request
import zlib
from pathlib import Path

from tqdm import tqdm

from .. import __version__
from ..common.errors import DataError, FetchError
from ..common.versions import checkout_path
from .registry import DatasetSpec, RemoteFile
from .registry import get as get_dataset

MIRROR_ENV = "SOFTLOSS_MIRROR"
# The project's own copies, in the checkout (wherever the command runs);
# `fetch --vendored DIR` names another place.
VENDOR_DIR = checkout_path("data/raw/vendored")
CHUNK = 1 << 20
CONNECT_TIMEOUT = 10.0  # seconds to connect and hear the first byte of an answer


# ------------------------------------------------------------------ checking
def digest(path, checksum):
    """Hex digest of `path` as `checksum` defines it (payload = gunzipped bytes)."""
    hasher = hashlib.new(checksum.algorithm)
    opener = gzip.open if checksum.over == "payload" else open
    try:
        with opener(path, "rb") as stream:
            for block in iter(lambda: stream.read(CHUNK), b""):
                hasher.update(block)
    except (OSError, EOFError, zlib.error) as error:  # gzip.BadGzipFile is an OSError
        kind = "gzip" if checksum.over == "payload" else "a file"
        raise DataError(f"{path}: cannot read it as {kind}: {error}") from None
    return hasher.hexdigest()


def check(path, remote: RemoteFile, payload=None):
    """Raise DataError unless `path` matches one of the checksums of `remote`.
    A caller that already holds the decompressed `payload` passes it, to skip a re-read."""
    found = []
    for checksum in remote.checksums:
        if payload is not None and checksum.over == "payload":
            value = hashlib.new(checksum.algorithm, payload).hexdigest()
        else:
            value = digest(path, checksum)
        if value == checksum.hexdigest:
            return
        found.append(f"{checksum.describe()} is {value}, expected {checksum.hexdigest}")
    raise DataError(f"{path}: checksum mismatch: {'; '.join(found)} (corrupt, truncated or a different file)")


def is_valid(path, remote):
    try:
        check(path, remote)
        return True
    except DataError:
        return False


# ------------------------------------------------------------------ sources
def sources(spec: DatasetSpec, mirrors=(), vendor_dir=VENDOR_DIR):
    """Mirrors given by the caller, then $SOFTLOSS_MIRROR, then the vendored copy, then the registry's URLs."""
    from_env = os.environ.get(MIRROR_ENV, "").replace(",", " ").split()
    copy = Path(vendor_dir) / spec.name
    vendored = [str(copy)] if spec.vendored and copy.is_dir() else []
    return [*mirrors, *from_env, *vendored, *spec.urls]


def _is_url(source):
    return "://" in str(source)


class _Permanent(Exception):
    """This source cannot serve the file; do not retry it."""


class _Transient(Exception):
    """This attempt failed but another one might not."""


def _silent_after(response, seconds):
    """Make reading `response` fail after `seconds` without a byte (its socket's
    timeout); a file:// response has no socket and never stalls."""
    sock = getattr(getattr(getattr(response, "fp", None), "raw", None), "_sock", None)
    if sock is not None:
        sock.settimeout(seconds)


def _open(request, answer_within, part):
    """The response to `request`, or _Transient / _Permanent saying why there is none."""
    try:
        return urllib.request.urlopen(request, timeout=answer_within)
    except urllib.error.HTTPError as error:
        if error.code == 416:  # our partial file is no prefix the server knows: start over
            part.unlink(missing_ok=True)
            raise _Transient(f"HTTP 416 {error.reason}") from None
        if error.code in (408, 429) or error.code >= 500:
            raise _Transient(f"HTTP {error.code} {error.reason}") from None
        raise _Permanent(f"HTTP {error.code} {error.reason}") from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        if isinstance(reason, FileNotFoundError):
            raise _Permanent("not found") from None
        if isinstance(reason, TimeoutError):  # connected, or tried to, and heard nothing
            raise _Permanent(f"no answer within {answer_within:g} s") from None
        # Nothing listens there, or the name does not resolve: waiting will not help.
        if isinstance(reason, (ConnectionRefusedError, socket.gaierror)):
            raise _Permanent(f"{type(reason).__name__}: {reason}") from None
        raise _Transient(f"{type(reason).__name__}: {reason}") from None


def _transfer(url, part, timeout, quiet, label):
    """One HTTP(S)/file attempt into `part`, resuming from its current size.
    A source that does not connect and answer within CONNECT_TIMEOUT (or
    `timeout`, if shorter) cannot answer: no retry. One that stalls for
    `timeout` seconds mid-body may: the attempt ends, the caller retries."""
    have = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": f"softloss/{__version__}"}
    if have and url.startswith(("http://", "https://")):
        headers["Range"] = f"bytes={have}-"
    answer_within = min(CONNECT_TIMEOUT, timeout)
    response = _open(urllib.request.Request(url, headers=headers), answer_within, part)
    with response:
        _silent_after(response, timeout)
        resumed = have and getattr(response, "status", 200) == 206
        length = response.headers.get("Content-Length")
        expected = int(length) + (have if resumed else 0) if length is not None else None
        written = have if resumed else 0
        try:
            with (
                open(part, "ab" if resumed else "wb") as out,
                tqdm(
                    total=expected,
                    initial=written,
                    unit="B",
                    unit_scale=True,
                    unit_divisor=1024,
                    desc=label,
                    disable=True if quiet else None,
                    leave=False,
                ) as bar,
            ):
                while block := (
                    response.read1(CHUNK) if hasattr(response, "read1") else response.read(CHUNK)
                ):
                    out.write(block)
                    written += len(block)
                    bar.update(len(block))
        except (OSError, http.client.HTTPException) as error:  # timeouts, resets, IncompleteRead
            raise _Transient(
                f"connection failed after {written} bytes: {type(error).__name__}: {error}"
            ) from None
        if expected is not None and written != expected:
            raise _Transient(f"connection closed after {written} of {expected} bytes")


def _from_directory(directory, spec, remote, part):
    for candidate in (Path(directory) / remote.name, Path(directory) / spec.name / remote.name):
        if candidate.is_file():
            shutil.copyfile(candidate, part)
            return candidate
    raise _Permanent("not found")


def _fetch_one(spec, remote, target, source, *, timeout, retries, backoff, quiet):
    """Fetch `remote` from one source into `target`; returns where it came from."""
    part = target.with_name(f".{target.name}.part")
    part.unlink(missing_ok=True)  # a stale part from a killed run is not trusted
    try:
        if not _is_url(source):
            where = _from_directory(source, spec, remote, part)
        else:
            where = source.rstrip("/") + "/" + remote.name
            for attempt in range(retries + 1):
                try:
                    _transfer(where, part, timeout, quiet, remote.name)
                    break
                except _Transient as error:
                    if attempt == retries:
                        tries = f"{retries + 1} attempts" if retries else "1 attempt"
                        raise _Transient(f"{error} (gave up after {tries})") from None
                    time.sleep(backoff * 2**attempt)
        try:
            check(part, remote)
        except DataError as error:
            raise _Permanent(str(error).replace(str(part), "download", 1)) from None
        os.replace(part, target)
        return where
    finally:
        part.unlink(missing_ok=True)


def fetch(
    dataset,
    out_dir,
    mirrors=(),
    *,
    timeout=30.0,
    retries=3,
    backoff=1.0,
    quiet=False,
    log=print,
    only=None,
    vendor_dir=VENDOR_DIR,
):
    """Make `out_dir` hold every file of `dataset` (a name or a DatasetSpec), verified.

    Returns the list of file paths. Raises FetchError naming every source tried
    and why it failed when a file cannot be had. `only` (a file name) fetches
    that file alone: jobs fetching the files of one dataset side by side then
    never share a file. `vendor_dir` holds the project's own copies, if any."""
    spec = get_dataset(dataset) if isinstance(dataset, str) else dataset
    if only is not None:
        if only not in {f.name for f in spec.files}:
            raise FetchError(f"{only} is not a file of {spec.name}")
        spec = dataclasses.replace(spec, files=(spec.file(only),))
    out_dir = Path(out_dir)
    made = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        return _fetch_all(
            spec,
            out_dir,
            sources(spec, mirrors, vendor_dir),
            timeout=timeout,
            retries=retries,
            backoff=backoff,
            quiet=quiet,
            log=log,
        )
    except BaseException:
        if made and not any(out_dir.iterdir()):  # leave no empty folder behind
            out_dir.rmdir()
        raise


def _fetch_all(spec, out_dir, candidates, *, timeout, retries, backoff, quiet, log):
    paths = []
    for remote in spec.files:
        target = out_dir / remote.name
        paths.append(target)
        if target.exists():
            if is_valid(target, remote):
                log(f"{target}: present, checksum ok")
                continue
            log(f"{target}: present but fails its checksum; fetching it again")
        tried = []
        if not candidates:
            raise FetchError(
                f"{spec.name} has no public download address: point --mirror or ${MIRROR_ENV} at a "
                f"directory holding {', '.join(f.name for f in spec.files)}"
            )
        for source in candidates:
            try:
                where = _fetch_one(
                    spec,
                    remote,
                    target,
                    source,
                    timeout=timeout,
                    retries=retries,
                    backoff=backoff,
                    quiet=quiet,
                )
                log(f"{target}: fetched from {where}, checksum ok")
                for (
                    failure
                ) in tried:  # a source that failed first, a corrupt mirror above all, is worth knowing
                    log(f"{target}: warning: a source failed before it: {failure.strip()[2:]}")
                break
            except (_Permanent, _Transient) as error:
                location = source.rstrip("/") + "/" + remote.name if _is_url(source) else str(source)
                tried.append(f"  - {location}: {error}")
        else:
            names = ", ".join(f.name for f in spec.files)
            raise FetchError(
                f"could not fetch {remote.name} of {spec.name}; every source failed:\n"
                + "\n".join(tried)
                + f"\nTo provide the data by hand, download {names} on a machine with internet and copy "
                f"them into {out_dir}/ (they are checked against the checksums in pipeline/datasets/registry.py), "
                f"or point --mirror or ${MIRROR_ENV} at a directory or URL that holds them."
            )
    return paths
