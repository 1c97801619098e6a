"""Argument types of the command line: whole numbers with a floor, NAME=PATH,
and an option that still answers to its older name."""

from __future__ import annotations

import argparse
import sys


def whole(minimum):
    """argparse type: a whole number >= minimum (argparse names the option in its error)."""

    def whole(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    whole.__name__ = "whole number"
    return whole


class OlderName(argparse.Action):
    """An option that also answers to its older name, with a note when that is used."""

    def __init__(self, *args, older, **kwargs):
        super().__init__(*args, **kwargs)
        self.older = older

    def __call__(self, parser, namespace, values, option_string=None):
        if option_string == self.older:
            print(
                f"note: {self.older} is now called {self.option_strings[0]}; it is still read",
                file=sys.stderr,
            )
        setattr(namespace, self.dest, values)


def named_path(text):
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=PATH")
    return text
