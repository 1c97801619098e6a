"""A run's checkpoints: parameters, optimizer state, RNG state and history
after each epoch (checkpoint.npz, and checkpoint.previous.npz of the epoch
before), resumed only under the same configuration and training code. A
damaged file is set aside (renamed, never deleted) with one line naming it."""
from __future__ import annotations

import json
import os

from ..core import optim, tree
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


def restore(checkpoint, config, code, params, state, rng, log):
    """(params, state, history) from the newest readable checkpoint if it belongs
    to this config and training `code`, else None (start afresh). Host arrays in
    and out: the caller moves them to its backend."""
    found = _readable_checkpoint(checkpoint, log)
    if found is None:
        return None
    arrays, meta = found
    if meta.get("fingerprint") != config.fingerprint():
        log(f"{checkpoint}: from a different configuration; starting afresh")
        return None
    if meta.get("code") != code:
        log(f"{checkpoint}: written by other training code; starting afresh")
        return None
    n = len(tree.leaves(params))
    slots = iter(arrays[n:])
    state = optim.OptState(meta["step"], tuple(tuple(next(slots) for _ in s) for s in state.slots))
    rng.bit_generator.state = meta["rng"]
    log(f"{checkpoint.parent}: resuming after epoch {len(meta['history'])}")
    return tree.rebuild(params, arrays[:n]), state, meta["history"]


def save(path, config, code, params, state, rng, history):
    meta = {"fingerprint": config.fingerprint(), "code": code, "step": state.step, "rng": rng.bit_generator.state,
            "history": history}  # fmt: skip
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
