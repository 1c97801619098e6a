"""Reproducible archives of a study's results, and their verification.

An archive (tar.gz) holds the config used, the exact package versions, the
data payload checksums, every run's history, metrics and status (no metrics for a
run still training, in a snapshot of a study in progress), the summaries,
the HTML report, and a MANIFEST with each member's SHA-256 and size.
All members lie under one folder named as the archive (`tar xzf` writes
nothing beside it). `verify` re-checks every checksum and that the report's
Table I, the numbers a reader sees and the JSON beside them, equals the
results inside the archive.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import tarfile
import zlib
from html.parser import HTMLParser
from pathlib import Path

from ..common.errors import DataError
from ..common.files import atomic_path, safe_members
from ..common.versions import git
from .provenance import environment
from .tables import TABLE1_JSON, table_rows

MANIFEST = "MANIFEST"
RUN_FILES = (
    "history.csv",
    "metrics.json",
    "status.json",
    "diagnostics.csv",
)  # diagnostics.csv where the run wrote one


def archive_name(day):
    return f"softloss-archive-{day:%Y%m%d}-{_commit()}.tar.gz"


def snapshot_name(moment):
    """A snapshot's name, to the minute: a study in progress is archived more than once a day."""
    return f"softloss-snapshot-{moment:%Y%m%d-%H%M}-{_commit()}.tar.gz"


def _commit():
    return git("rev-parse", "--short=12", "HEAD") or "nogit"


def folder_name(path):
    """The folder an archive's members lie in: its file name without .tar.gz."""
    return Path(path).name.removesuffix(".tar.gz")


def _members(summaries, report, config, data_files, names):
    """{name inside the archive: bytes}, MANIFEST included."""
    import h5py

    members = {
        "config.json": json.dumps(config, indent=2, sort_keys=True).encode(),
        "environment.json": json.dumps(environment(), indent=2, sort_keys=True).encode(),
    }
    checksums = {}
    for path in data_files:
        with h5py.File(path, "r") as h5:
            checksums[str(path)] = dict(zip(h5.attrs["source_files"], h5.attrs["source_sha256"]))
    members["data_checksums.json"] = json.dumps(checksums, indent=2, sort_keys=True).encode()
    names = {Path(path): name for path, name in names.items()}
    for summary in map(Path, summaries):
        members[names.get(summary, summary.as_posix())] = summary.read_bytes()
        for run in json.loads(summary.read_text())["runs"]:
            for name in RUN_FILES:
                if name == "metrics.json" and run["status"] == "running":
                    continue  # a snapshot of a run still training has none yet
                path = Path(run["run_dir"]) / name
                if name == "diagnostics.csv" and not path.is_file():
                    continue
                members[path.as_posix()] = path.read_bytes()
    members[names.get(Path(report), Path(report).as_posix())] = Path(report).read_bytes()
    manifest = "".join(
        f"{hashlib.sha256(data).hexdigest()}  {len(data)}  {name}\n" for name, data in sorted(members.items())
    )
    members[MANIFEST] = manifest.encode()
    return members


def build(out_path, summaries, report, config, data_files=(), names=None):
    """Write the archive of the runs listed in `summaries` to `out_path`; the
    summaries and the report are named by their paths, or by `names` ({path:
    name in the archive}) where they were written elsewhere."""
    top = folder_name(out_path)
    with atomic_path(out_path) as tmp, tarfile.open(tmp, "w:gz") as tar:
        for name, data in sorted(_members(summaries, report, config, data_files, names or {}).items()):
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    return Path(out_path)


def read(path):
    """{member name: bytes} of an archive, the names relative to its one folder
    (archives made before there was one have their members at the top)."""
    try:
        # The whole gzip stream first: tarfile stops at the tar end marker and never
        # reaches the gzip trailer, whose CRC and length catch a cut-off tail.
        with gzip.open(path, "rb") as stream:
            raw = stream.read()
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
            contents = {}
            for member in safe_members(tar, name=path):
                if member.isfile():
                    contents[member.name] = tar.extractfile(member).read()
    except (tarfile.TarError, EOFError, zlib.error, OSError) as error:
        raise DataError(f"{path}: not a readable archive (truncated or corrupt?): {error}") from None
    tops = {name.split("/", 1)[0] for name in contents}
    if MANIFEST not in contents and len(tops) == 1 and f"{next(iter(tops))}/{MANIFEST}" in contents:
        contents = {name.split("/", 1)[1]: data for name, data in contents.items()}
    return contents


def _check_manifest(path, contents):
    """Every member against the MANIFEST; returns how many it lists."""
    if MANIFEST not in contents:
        raise DataError(f"{path}: no {MANIFEST}; not a softloss archive")
    listed = {}
    for line in contents.pop(MANIFEST).decode().splitlines():
        digest, size, name = line.split("  ", 2)
        listed[name] = (digest, int(size))
    for name, (digest, size) in listed.items():
        if name not in contents:
            raise DataError(f"{path}: {name} is listed in the MANIFEST but missing")
        if len(contents[name]) != size or hashlib.sha256(contents[name]).hexdigest() != digest:
            raise DataError(f"{path}: {name} does not match its MANIFEST checksum (tampered or corrupt)")
    extra = sorted(set(contents) - set(listed))
    if extra:
        raise DataError(f"{path}: members not in the MANIFEST: {', '.join(extra)}")
    return len(listed)


class _Cells(HTMLParser):
    """Table I's measured cells as a reader sees them: {(dataset, model, loss): text}."""

    def __init__(self):
        super().__init__()
        self.cells, self._table, self._row, self._cell = {}, None, None, None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self._table = attrs.get("id")
        elif self._table == "table1" and tag == "tr" and "data-loss" in attrs:
            self._row = (attrs["data-dataset"], attrs["data-model"])
        elif self._table == "table1" and tag == "td" and "data-form" in attrs:
            self._cell = (*self._row, attrs["data-loss"])
            self.cells[self._cell] = ""

    def handle_endtag(self, tag):
        if tag == "td":
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self.cells[self._cell] += data


# Table I's summary: results/NAME/summary.json (results/summary.json before each config had its folder).
_MAIN_SUMMARY = re.compile(r"results/(?:[^/]+/)?summary\.json")


def main_summary(contents):
    """The name of Table I's summary among an archive's members, or None."""
    return next((name for name in sorted(contents) if _MAIN_SUMMARY.fullmatch(name)), None)


def _check_table1(path, contents):
    """The report's Table I, its JSON and the cells a reader sees, against the runs."""
    reports = [name for name in contents if name.endswith(".html")]
    summary_name = main_summary(contents)
    if not reports or summary_name is None:
        return
    summary = json.loads(contents[summary_name])["runs"]
    for run in summary:  # the summary must agree with the per-run files it was built from
        if run["status"] == "running":  # then its status.json must say so, and there are no metrics to agree
            if json.loads(contents[f"{run['run_dir']}/status.json"]).get("status") != "running":
                raise DataError(
                    f"{path}: {summary_name} says {run['run_dir']} is running, its status.json does not"
                )
            continue
        metrics = json.loads(contents[f"{run['run_dir']}/metrics.json"])
        if metrics.get("test_accuracy") != run.get("test_accuracy"):
            raise DataError(f"{path}: {run['run_dir']}/metrics.json disagrees with {summary_name}")
    expected = {(r["dataset"], r["model"], r["loss"]): r["mean"] for r in table_rows(summary)}
    html = contents[reports[0]].decode()
    try:
        shown = {
            (r["dataset"], r["model"], r["loss"]): r["mean"]
            for r in json.loads(TABLE1_JSON.search(html).group(1))
        }
    except (AttributeError, ValueError, KeyError, TypeError):
        raise DataError(f"{path}: the report holds no readable Table I") from None
    if set(shown) != set(expected):
        raise DataError(f"{path}: the report's Table I lists other runs than the results")
    cells = _Cells()
    cells.feed(html)
    for key, mean in expected.items():
        if (mean is None) != (shown[key] is None) or (
            mean is not None and abs(shown[key] - mean) > 1e-9 * max(1, abs(mean))
        ):
            raise DataError(
                f"{path}: Table I's data shows {'no result' if shown[key] is None else shown[key]} for "
                f"{'/'.join(key)}, the results give {mean}"
            )
        seen = cells.cells.get(key, "").split()
        if mean is not None and (not seen or seen[0] != f"{mean:.2f}"):
            raise DataError(
                f"{path}: Table I shows {' '.join(seen[:1]) or 'nothing'} for {'/'.join(key)}, "
                f"the results give {mean:.2f}"
            )


def verify(path):
    """Check every member against the MANIFEST and Table I against the runs;
    returns the number of members checked. Raises DataError naming the problem."""
    path = Path(path)
    contents = read(path)
    count = _check_manifest(path, contents)
    _check_table1(path, contents)
    return count
