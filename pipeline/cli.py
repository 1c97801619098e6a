"""Command line: `python -m pipeline COMMAND ...` (see `--help`)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _bench(args):
    from . import bench

    bench.run(cases=args.cases, steps=args.steps, repeats=args.repeats, with_torch=not args.no_torch)


def _fetch(args):
    from .fetch import fetch

    fetch(args.dataset, args.out, args.mirror, timeout=args.timeout, retries=args.retries, quiet=args.quiet)


def _prepare(args):
    from .data import prepare

    prepare(args.dataset, args.raw, args.out)


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m pipeline", description="softloss: the classification-loss study")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    fetch = commands.add_parser("fetch", help="download and verify a dataset's raw files")
    fetch.add_argument("dataset", help="mnist, fashion_mnist or cifar10")
    fetch.add_argument("--out", required=True, type=Path, help="directory for the raw files (data/raw/DATASET)")
    fetch.add_argument("--mirror", action="append", default=[], metavar="URL_OR_DIR",
                       help="try this source first (repeatable); then $SOFTLOSS_MIRROR, then the official URLs")
    fetch.add_argument("--timeout", type=float, default=30.0, help="socket timeout in seconds (default 30)")
    fetch.add_argument("--retries", type=int, default=3, help="retries per source for transient failures")
    fetch.add_argument("--quiet", action="store_true", help="no progress bars")
    fetch.set_defaults(run=_fetch)

    prepare = commands.add_parser("prepare", help="parse raw files into one HDF5 dataset file")
    prepare.add_argument("dataset", help="mnist, fashion_mnist or cifar10")
    prepare.add_argument("--raw", required=True, type=Path, help="directory holding the fetched raw files")
    prepare.add_argument("--out", required=True, type=Path, help="HDF5 file to write (e.g. data/mnist.h5)")
    prepare.set_defaults(run=_prepare)

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
    from .errors import SoftlossError

    reuse_freed_memory()
    try:
        args.run(args)
    except (SoftlossError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0
