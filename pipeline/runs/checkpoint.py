"""A run's checkpoints: parameters, optimizer state, RNG state and history
after each epoch (checkpoint.npz, and checkpoint.previous.npz of the epoch
before), resumed only under the same identity: configuration, training code
and data. A damaged file is set aside (renamed, never deleted) with one line
naming it."""

from __future__ import annotations

import json
import os

from ..common.errors import SoftlossError
from ..core import optim, tree
from .numerics import differences
from .rundir import UnreadableFile, load_arrays, save_arrays


def set_aside(path):
    """Rename a damaged file out of the way (never delete it): path.unreadable-N."""
    n = 1
    while path.with_name(f"{path.name}.unreadable-{n}").exists():
        n += 1
    aside = path.with_name(f"{path.name}.unreadable-{n}")
    path.rename(aside)
    return aside


def _previous(checkpoint):
    return checkpoint.with_name("checkpoint.previous.npz")


def _readable_checkpoint(checkpoint, log):
    """(arrays, meta) of the newest readable checkpoint: `checkpoint`, else the
    one of the epoch before; damaged ones are set aside with one line each."""
    for path in (checkpoint, _previous(checkpoint)):
        try:
            return load_arrays(path)
        except FileNotFoundError:
            continue
        except UnreadableFile as error:
            log(f"{error}; set aside as {set_aside(path).name}")
    return None


# What a run is, as its status.json records it: a checkpoint of another is never resumed.
IDENTITY = {
    "fingerprint": "a different configuration",
    "code": "other training code",
    "data_sha256": "other data (the dataset's content changed)",
}


def identity(status):
    return {key: status.get(key) for key in IDENTITY}


def restore(checkpoint, run_identity, numerics, params, state, rng, log, allow_different=False):
    """(params, state, history, diagnostics, what differs in the numerics or None)
    from the newest readable checkpoint if it has `run_identity` (`identity`
    of the run's status), else None (start afresh). One written under other `numerics` (pipeline.runs.numerics) is
    refused, unless `allow_different`. Host arrays in and out: the caller moves
    them to its backend."""
    found = _readable_checkpoint(checkpoint, log)
    if found is None:
        return None
    arrays, meta = found
    for key, differs in IDENTITY.items():
        if meta.get(key) != run_identity[key]:
            log(f"{checkpoint}: written for {differs}; starting afresh")
            return None
    changed = None
    if meta.get("numerics") != numerics:
        changed = differences(meta.get("numerics"), numerics)
        if not allow_different:
            raise SoftlossError(
                f"{checkpoint}: written under other settings ({changed}); resuming would mix two "
                "computations in one run: pass --allow-different-settings to resume anyway, or "
                "delete the run to train it afresh"
            )
        log(f"{checkpoint}: resuming under other settings ({changed}), as allowed")
    n = len(tree.leaves(params))
    slots = iter(arrays[n:])
    state = optim.OptState(meta["step"], tuple(tuple(next(slots) for _ in s) for s in state.slots))
    rng.bit_generator.state = meta["rng"]
    log(f"{checkpoint.parent}: resuming after epoch {len(meta['history'])}")
    return tree.rebuild(params, arrays[:n]), state, meta["history"], meta.get("diagnostics", []), changed


def save(path, run_identity, numerics, params, state, rng, history, diagnostics):
    meta = {
        **run_identity,
        "numerics": numerics,
        "step": state.step,
        "rng": rng.bit_generator.state,
        "history": history,
        "diagnostics": diagnostics,
    }
    if path.exists():  # kept: a run whose newest checkpoint is damaged resumes from this one
        os.replace(path, _previous(path))
    save_arrays(path, [*tree.leaves(params), *(a for s in state.slots for a in s)], meta)


def read_status(path, log):
    """The status.json in a run directory, or None (absent, or damaged: set aside)."""
    try:
        previous = json.loads(path.read_text())
        if not isinstance(previous, dict):
            raise ValueError("not a JSON object")
        return previous
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        log(f"{path}: unreadable ({error}); set aside as {set_aside(path).name}")
        return None
