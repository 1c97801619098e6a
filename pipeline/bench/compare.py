"""The CPU settings `bench --compare` switches between timed blocks of one
process: name -> (parse a value, read the current one, set one). On a shared
machine a whole bench's ratio moves between runs by more than a change worth
a few percent; alternate blocks in one process see the same machine state."""

from __future__ import annotations

from ..core.settings import CHOICES, SETTINGS
from ..kernels import parallel
from .cases import whole


def _choice(choices):
    def parse(text):
        if text not in choices:
            raise ValueError(f"{text!r} is not one of {', '.join(choices)}")
        return text

    return parse


def _setting(name, parse):
    """A field of SETTINGS, read and set."""
    return parse, (lambda: getattr(SETTINGS, name)), (lambda value: SETTINGS.set(**{name: value}))


def _block_kib():
    """SETTINGS.block_bytes, read and set in KiB."""
    return whole, (lambda: SETTINGS.block_bytes >> 10), (lambda kib: SETTINGS.set(block_bytes=kib << 10))


COMPARABLE = {
    **{name.replace("_", "-"): _setting(name, _choice(choices)) for name, choices in CHOICES.items()},
    "threads": (whole, parallel.workers, parallel.set_workers),
    "block-kib": _block_kib(),
    "winograd-min-channels": _setting("winograd_min_channels", whole),
}


def parse_comparison(text):
    """'SETTING=A,B[,...]' -> (setting, [values]), the first value the baseline."""
    name, _, listed = text.partition("=")
    if name not in COMPARABLE:
        known = ", ".join(COMPARABLE)
        raise ValueError(f"--compare {text!r}: the setting is one of {known} (as SETTING=A,B)")
    try:
        values = [COMPARABLE[name][0](value) for value in listed.split(",")] if listed else []
    except ValueError as error:
        raise ValueError(f"--compare {text!r}: {error}") from None
    if len(values) < 2 or len(set(values)) < len(values):
        raise ValueError(f"--compare {text!r}: give two or more different values, as {name}=A,B")
    return name, values
