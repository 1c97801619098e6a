"""Where results came from: the code's commit, package versions, machine,
config and data checksums. The report shows it; the archive records it."""

from __future__ import annotations

import collections
import datetime
import json
import os
import platform
from importlib import metadata

import h5py

from ..common.errors import SoftlossError
from ..common.machine import cpu_name
from ..common.versions import code_commit, git

PACKAGES = ("numpy", "autograd", "h5py", "matplotlib", "jinja2", "snakemake", "tqdm", "pillow", "softloss")


def _short(commit):
    """A run's commit as the report shows it: 12 hex digits and any mark, or "unknown"."""
    if not commit:
        return "unknown"
    head, _, mark = commit.partition(" ")
    return f"{head[:12]} {mark}".strip()


def _trained_on(run):
    return "; ".join(filter(None, (run.get("device", "CPU"), run.get("blas"))))


def _wall_groups(runs):
    """The runs' wall time per machine and code: how many, in all, the median
    and the longest run, and their statuses."""
    groups = collections.defaultdict(list)
    for run in runs:
        groups[(_trained_on(run), _short(run.get("commit")))].append(run)
    found = []
    for (device, commit), members in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        seconds = [r.get("wall_seconds") or 0.0 for r in members]
        longest = max(members, key=lambda r: r.get("wall_seconds") or 0.0)
        found.append(
            {
                "device": device,
                "commit": commit,
                "runs": len(members),
                "total": sum(seconds),
                "median": float(sorted(seconds)[len(seconds) // 2]),
                "longest": longest["run_dir"],
                "longest_seconds": longest.get("wall_seconds") or 0.0,
                "statuses": collections.Counter(r["status"] for r in members).most_common(),
            }
        )
    return found


def provenance(data_files, config, runs):
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    datasets = []
    for path in data_files:
        try:
            with h5py.File(path, "r") as h5:
                attrs = dict(h5.attrs)
        except OSError as error:
            raise SoftlossError(f"{path}: cannot read dataset attributes ({error})") from None
        datasets.append(
            {
                "path": str(path),
                "dataset": attrs.get("dataset"),
                "source": attrs.get("source"),
                "note": attrs.get("note", ""),
                "variant_of": attrs.get("variant_of", ""),
                "files": list(zip(attrs.get("source_files", []), attrs.get("source_sha256", []))),
            }
        )
    return {
        "commit": code_commit() or "unknown (not a git checkout)",
        "generated": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "versions": versions,
        "python": platform.python_version(),
        "machine": f"{platform.platform()}; {cpu_name()}; {os.cpu_count()} CPUs",
        "config": json.dumps(config, indent=2, sort_keys=True),
        "datasets": datasets,
        "wall": sorted(
            (r["run_dir"], r.get("wall_seconds") or 0.0, r["status"], _trained_on(r), _short(r.get("commit")))
            for r in runs
        ),
        "wall_groups": _wall_groups(runs),
        "run_commits": collections.Counter(_short(r.get("commit")) for r in runs).most_common(),
        "total_wall": sum(r.get("wall_seconds") or 0.0 for r in runs),
    }


def environment():
    """The interpreter, platform, commit and every installed package's version."""
    packages = sorted(
        {(d.metadata["Name"], d.version) for d in metadata.distributions() if d.metadata["Name"]}
    )
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "commit": git("rev-parse", "HEAD"),
        "packages": {name: version for name, version in packages},
    }
