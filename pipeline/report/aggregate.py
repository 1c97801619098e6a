"""`aggregate`: run directories -> one summary JSON (every run's metrics,
config and history), the input of the report and the archive."""
from __future__ import annotations

import json
from pathlib import Path

from ..common.errors import SoftlossError
from ..common.files import write_json
from ..runs.rundir import read_history


def aggregate(run_dirs, out_path):
    runs = []
    for run_dir in map(Path, run_dirs):
        try:
            metrics = json.loads((run_dir / "metrics.json").read_text())
            history = read_history(run_dir / "history.csv")
        except (OSError, ValueError) as error:
            raise SoftlossError(f"{run_dir}: missing or unreadable results ({error})") from None
        config = metrics["config"]
        runs.append({
            "run_dir": str(run_dir),
            "dataset": Path(config["data"]).stem,
            "model": config["model"],
            "loss": config["loss"],
            "seed": config["seed"],
            **{k: v for k, v in metrics.items() if k != "config"},
            "config": config,
            "history": history,
        })  # fmt: skip
    write_json(out_path, {"runs": runs})
    return runs


def read_runs(path):
    try:
        return json.loads(Path(path).read_text())["runs"]
    except (OSError, ValueError, KeyError) as error:
        raise SoftlossError(f"{path}: unreadable summary ({error})") from None
