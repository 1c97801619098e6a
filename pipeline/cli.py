"""Command line: `python -m pipeline COMMAND ...` (see `--help`)."""
from __future__ import annotations

import argparse
import sys


def _bench(args):
    from . import bench

    bench.run(cases=args.cases, steps=args.steps, repeats=args.repeats, with_torch=not args.no_torch)


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m pipeline", description="softloss: the classification-loss study")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    bench = commands.add_parser("bench", help="train-step throughput beside PyTorch CPU")
    bench.add_argument("--cases", nargs="+", default=None, metavar="MODEL:BATCH",
                       help="e.g. mnist_cnn:128 (default: knet_softmax:100 mnist_cnn:128 cifar_cnn:32 cifar_cnn:128)")
    bench.add_argument("--steps", type=int, default=None, help="steps per timed block (default: about 2048 images)")
    bench.add_argument("--repeats", type=int, default=3, help="timed blocks per framework (median reported)")
    bench.add_argument("--no-torch", action="store_true", help="time softloss only")
    bench.set_defaults(run=_bench)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    if getattr(args, "cases", None) is None and args.command == "bench":
        from .bench import DEFAULT_CASES

        args.cases = DEFAULT_CASES
    from .backend import reuse_freed_memory

    reuse_freed_memory()
    try:
        args.run(args)
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0
