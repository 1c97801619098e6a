"""`python -m pipeline reproduce ARCHIVE`: retrain runs of an archive from
its own record (each run's config and numerics) on this machine, and compare
every epoch with what the archive holds.

The data is checked against the archive's checksums first. Each chosen run
(default: the cheapest run of each loss) trains afresh in a temporary folder
for the archive's epochs or fewer, under the CPU settings its status.json
recorded; then either "identical through epoch N", or the first epoch that
differs, by how much, and the recorded facts that differ here (CPU, BLAS
kernels, settings, package versions): the usual reasons float32 runs part.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import tempfile
from pathlib import Path

from .common.errors import DataError, SoftlossError
from .common.machine import blas_kernel
from .core.backend import NUMPY
from .core.settings import SETTINGS
from .report.archive import main_summary, read, verify
from .runs.config import RunConfig
from .runs.numerics import differences
from .runs.train import run as train

UNTIMED = ("seconds", "eval_seconds")  # an epoch's wall time is not a result


def _history(text):
    rows = csv.DictReader(io.StringIO(text))
    return [{k: float(v) if v != "" else None for k, v in row.items() if k not in UNTIMED} for row in rows]


def _chosen(runs, wanted):
    """The archive's runs named in `wanted` (run directories, or their ends;
    "all": every one), else the cheapest (least wall time per epoch) of each loss."""
    if list(wanted) == ["all"]:
        return sorted(runs, key=lambda r: r["run_dir"])
    if wanted:
        found = []
        for name in wanted:
            matches = [
                r for r in runs if r["run_dir"] == name or r["run_dir"].endswith("/" + name.strip("/"))
            ]
            if len(matches) != 1:
                raise SoftlossError(
                    f"{name}: {'no' if not matches else 'more than one'} run of the archive is called so"
                )
            found += matches
        return found
    cheapest = {}
    for r in runs:
        cost = (r.get("wall_seconds") or math.inf) / max(1, len(r.get("history") or [1]))
        if r["loss"] not in cheapest or cost < cheapest[r["loss"]][0]:
            cheapest[r["loss"]] = (cost, r)
    return [r for _, r in sorted(cheapest.values(), key=lambda c: c[1]["run_dir"])]


def _check_data(path, recorded):
    """The prepared file `path` holds the source files the archive's checksums name."""
    if not Path(path).is_file():
        raise DataError(f"{path}: no such dataset file; prepare it first (snakemake --cores 1 {path})")
    import h5py

    with h5py.File(path, "r") as h5:
        here = dict(zip(h5.attrs["source_files"], h5.attrs["source_sha256"]))
    if here != recorded:
        raise DataError(f"{path}: not the data of the archive (its source files' checksums differ)")


def _facts(status, environment):
    """What the archive recorded of a run's machine and numerics, as `numerics` gives them."""
    recorded = status.get("numerics") or {}
    versions = recorded.get("versions") or {
        k: environment.get("packages", {}).get(k) for k in ("numpy", "autograd", "numba")
    }
    return {
        "device": status.get("device"),
        "blas": status.get("blas"),
        "settings": recorded.get("settings"),
        "versions": versions,
    }


def _compare(archived, retrained):
    """'identical through epoch N', or the first epoch that differs and by how much."""
    for old, new in zip(archived, retrained):
        keys = [k for k in old if k in new and old[k] != new[k]]
        if keys:
            worst = sorted(keys, key=lambda k: -abs((new[k] or 0) - (old[k] or 0)))[:3]
            parts = [
                f"{k} {old[k]!r} -> {new[k]!r} ({abs((new[k] or 0) - (old[k] or 0)):.2g})" for k in worst
            ]
            return False, f"first differs at epoch {int(old['epoch'])}: {', '.join(parts)}"
    return True, f"identical through epoch {len(retrained)}"


def _runs(archive, contents):
    name = main_summary(contents)
    if name is None:
        raise SoftlossError(f"{archive}: holds no summary of Table I's runs (results/NAME/summary.json)")
    return json.loads(contents[name])["runs"]


def datasets(archive):
    """The prepared dataset files an archive's runs were trained on (as their config named them)."""
    return sorted({r["config"]["data"] for r in _runs(archive, read(archive))})


def reproduce(archive, wanted=(), epochs=None, data_dir=None, overrides=None, log=print):
    """Retrain and compare the chosen runs of `archive`; returns [(run_dir, identical, line)]."""
    verify(archive)
    contents = read(archive)
    summary = _runs(archive, contents)
    checksums = json.loads(contents["data_checksums.json"])
    environment = json.loads(contents.get("environment.json", b"{}"))
    results = []
    for entry in _chosen(summary, wanted):
        status = json.loads(contents[f"{entry['run_dir']}/status.json"])
        archived = _history(contents[f"{entry['run_dir']}/history.csv"].decode())
        config = RunConfig.from_dict(status["config"])
        data = Path(data_dir) / Path(config.data).name if data_dir else Path(config.data)
        _check_data(data, checksums.get(config.data, {}))
        n = min(epochs or len(archived), len(archived))
        settings = {**((status.get("numerics") or {}).get("settings") or {}), **(overrides or {})}
        with tempfile.TemporaryDirectory() as tmp, SETTINGS.using(**settings):
            trained = train(
                dataclasses.replace(config, data=str(data), epochs=n),
                Path(tmp) / "run",
                quiet=True,
                log=lambda line: None,
                backend="numpy",
            )
            retrained = _history((Path(tmp) / "run" / "history.csv").read_text())
            here = {
                "device": NUMPY.device,
                "blas": blas_kernel(),
                "settings": trained["numerics"]["settings"],
                "versions": trained["numerics"]["versions"],
            }
        same, line = _compare(archived[:n], retrained)
        changed = differences(_facts(status, environment), here)
        if not same or changed:
            line += f"; recorded facts that differ here: {changed or 'none'}"
        log(f"{entry['run_dir']}: {line}")
        results.append((entry["run_dir"], same, line))
    return results
