"""Moving a checkout's runs from the layout before each config had its own
folder (results/RUN, one tree for every config) into results/NAME/RUN, where
the workflow now looks for them (NAME: `configcheck.config_name`)."""

from __future__ import annotations

from pathlib import Path


def _summaries(results):
    """Table I's summary and the side studies' files, which lay beside the runs."""
    return [results / "summary.json", *results.glob("studies/*.json"), *results.glob("studies/*/*.json")]


def move_old_layout(run_ids, name, results=Path("results"), log=print):
    """Move each run of `run_ids` found at results/RUN to results/NAME/RUN, and
    the summaries with them; a run already at its new place is left where both
    are, and said so. Returns how many runs moved."""
    target = results / name
    moved = 0
    for run_id in sorted(run_ids):
        old, new = results / run_id, target / run_id
        if not (old / "status.json").is_file():
            continue
        if new.exists():
            log(f"{old}: left in place: {new} exists")
            continue
        new.parent.mkdir(parents=True, exist_ok=True)
        old.rename(new)
        moved += 1
    for old in _summaries(results):
        new = target / old.relative_to(results)
        if old.is_file() and not new.exists():
            new.parent.mkdir(parents=True, exist_ok=True)
            old.rename(new)
    _remove_empty(results, keep=target)
    log(f"{moved} run(s) moved to {target}/")
    return moved


def _remove_empty(results, keep):
    """Remove the folders the moves left empty under `results`, `keep` and its own aside."""
    for folder in sorted((p for p in results.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        if folder != keep and keep not in folder.parents and not any(folder.iterdir()):
            folder.rmdir()
