"""Command line: `python -m pipeline COMMAND ...` (see `--help`)."""

from __future__ import annotations

import sys

from .arguments import build_parser
from .common.errors import SoftlossError

# The package code each command runs: its modules and what they import
# (pipeline.common.versions), and the files it reads beside them. A workflow
# rule's code version is its command's, so a change to that code, and only
# to it, reruns the rule's jobs.
COMMAND_CODE = {
    "fetch": (("datasets.fetch",), ()),
    "prepare": (("datasets.prepare",), ()),
    "train": (("runs.train",), ()),
    "evaluate": (("runs.evaluate",), ()),
    "diagnose": (("runs.diagnose",), ()),
    "toy": (("runs.toy",), ()),
    "aggregate": (("report.aggregate",), ()),
    "report": (("report.render", "studies"), ("report/templates/*.j2", "studies/templates/*.j2")),
    "archive": (("report.archive",), ()),
    "snapshot": (("report.snapshot",), ("report/templates/*.j2",)),
    "reproduce": (("reproduce",), ()),
}


def command_version(*commands):
    """12 hex digits identifying the code `python -m pipeline COMMAND` runs (for
    a rule that runs several, all of theirs)."""
    from .common.versions import code_version

    modules = [module for command in commands for module in COMMAND_CODE[command][0]]
    files = [pattern for command in commands for pattern in COMMAND_CODE[command][1]]
    return code_version(*modules, extra=files)


def main(argv=None):
    args = build_parser().parse_args(argv)
    if getattr(args, "cases", None) is None and args.command == "bench":
        from .bench.cases import DEFAULT_CASES

        args.cases = DEFAULT_CASES
    from .common.machine import reuse_freed_memory

    reuse_freed_memory()
    try:
        code = args.run(args)
    except (SoftlossError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return code or 0
