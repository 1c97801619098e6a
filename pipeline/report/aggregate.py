"""`aggregate`: run directories -> one summary JSON (every run's metrics,
config and history), the input of the report and the archive."""

from __future__ import annotations

import json
from pathlib import Path

from ..common.errors import SoftlossError
from ..common.files import write_json
from ..runs.rundir import read_diagnostics, read_history

RUNNING = "running"


def _results(run_dir, in_progress):
    """(metrics, history) of a run: its metrics.json, or, with `in_progress`, for a
    run still training, its status.json with the epoch it reached as the reason."""
    history = read_history(run_dir / "history.csv")
    try:
        return json.loads((run_dir / "metrics.json").read_text()), history
    except FileNotFoundError:
        status = json.loads((run_dir / "status.json").read_text())
    if status.get("status") != RUNNING:
        raise SoftlossError(
            f"{run_dir}: no metrics.json, and status.json says {status.get('status')!r}, not running"
        )
    status["reason"] = f"still training: epoch {len(history)} of {status['config']['epochs']}"
    if not in_progress:
        raise SoftlossError(f"{run_dir}: {status['reason']} (aggregate --in-progress takes it as it stands)")
    return status, history


def aggregate(run_dirs, out_path, in_progress=False):
    """With `in_progress`, runs still training are taken as they stand (status
    "running", their history so far, no test metrics): a snapshot of a study."""
    runs = []
    for run_dir in map(Path, run_dirs):
        try:
            metrics, history = _results(run_dir, in_progress)
        except (OSError, ValueError, KeyError) as error:
            raise SoftlossError(f"{run_dir}: missing or unreadable results ({error})") from None
        config = metrics["config"]
        runs.append(
            {
                "run_dir": str(run_dir),
                "dataset": Path(config["data"]).stem,
                "model": config["model"],
                "loss": config["loss"],
                "seed": config["seed"],
                **{k: v for k, v in metrics.items() if k != "config"},
                "config": config,
                "history": history,
                # where the loss's gradient went, every epoch (none for runs trained before it was written)
                "diagnostics": read_diagnostics(run_dir / "diagnostics.csv")
                if (run_dir / "diagnostics.csv").is_file()
                else [],
            }
        )
    write_json(out_path, {"runs": runs})
    return runs


def read_runs(path):
    try:
        return json.loads(Path(path).read_text())["runs"]
    except (OSError, ValueError, KeyError) as error:
        raise SoftlossError(f"{path}: unreadable summary ({error})") from None
