"""The command line's arguments for what is done with runs once trained:
aggregate, report, toy, archive, snapshot, reproduce, verify-archive, and the
bench (pipeline.arguments has the others and the argument types)."""

from __future__ import annotations

from pathlib import Path

from . import handlers
from .argtypes import named_path, whole
from .bench.compare import COMPARABLE
from .core.backend import BACKENDS


def _aggregate(commands, names):
    """`aggregate`."""
    aggregate = commands.add_parser("aggregate", help="collect run directories into one summary JSON")
    aggregate.add_argument("--runs", nargs="+", required=True, type=Path, help="run directories")
    aggregate.add_argument(
        "--out", required=True, type=Path, help="summary JSON to write (results/summary.json)"
    )
    aggregate.add_argument(
        "--in-progress",
        action="store_true",
        help="take runs still training as they stand (their history so far; no test metrics): a snapshot to report and archive",
    )
    aggregate.set_defaults(run=handlers.aggregate)


def _report(commands, names):
    """`report`."""
    report = commands.add_parser("report", help="render the HTML report from a summary JSON")
    report.add_argument("--summary", required=True, type=Path, help="Table I's summary JSON (from aggregate)")
    report.add_argument("--data", nargs="*", default=[], type=Path, help="prepared datasets (for provenance)")
    report.add_argument("--config-json", default=None, help="the configuration used, as JSON")
    report.add_argument(
        "--study", action="append", default=[], type=Path, help="a study's summary JSON (repeatable)"
    )
    report.add_argument(
        "--input",
        action="append",
        default=[],
        metavar="NAME=PATH",
        type=named_path,
        help="a file a study's view reads, e.g. toy=results/studies/knet_softmax/toy_boundaries.json",
    )
    report.add_argument("--out", required=True, type=Path, help="HTML file to write (reports/summary.html)")
    report.add_argument(
        "--figures",
        type=Path,
        default=None,
        metavar="DIR",
        help="also write the report's figures (PNG) and Table I (CSV) into DIR, for snakemake --report",
    )
    report.set_defaults(run=handlers.report)


def _toy(commands, names):
    """`toy`."""
    toy = commands.add_parser("toy", help="2-D toy: linear softmax vs MLP class boundaries, as JSON")
    toy.add_argument("--out", required=True, type=Path, help="JSON file to write")
    toy.set_defaults(run=handlers.toy)


def _archive(commands, names):
    """`archive`."""
    archive = commands.add_parser("archive", help="pack config, versions, checksums, runs and report")
    archive.add_argument(
        "--summary", nargs="+", required=True, type=Path, help="summary JSONs whose runs to pack"
    )
    archive.add_argument("--report", required=True, type=Path, help="the HTML report to pack")
    archive.add_argument(
        "--data", nargs="*", default=[], type=Path, help="prepared datasets (their checksums)"
    )
    archive.add_argument("--config-json", default=None, help="the configuration used, as JSON")
    archive.add_argument(
        "--out",
        required=True,
        type=Path,
        help="archive to write; its members lie in a folder of its name (without .tar.gz)",
    )
    archive.set_defaults(run=handlers.archive)


def _snapshot(commands, names):
    """`snapshot`."""
    snapshot = commands.add_parser("snapshot", help="archive a study still training: its runs as they stand")
    snapshot.add_argument(
        "--runs",
        nargs="+",
        required=True,
        type=Path,
        help="the study's run directories (those not started yet are left out)",
    )
    snapshot.add_argument(
        "--data", nargs="*", default=[], type=Path, help="prepared datasets (their checksums)"
    )
    snapshot.add_argument("--config-json", default=None, help="the configuration used, as JSON")
    snapshot.add_argument(
        "--out", required=True, type=Path, help="archive to write (the study's files are untouched)"
    )
    snapshot.set_defaults(run=handlers.snapshot)


def _reproduce(commands, names):
    """`reproduce`."""
    again = commands.add_parser(
        "reproduce", help="retrain an archive's runs from its own record and compare every epoch"
    )
    again.add_argument("archive", type=Path, help="a softloss archive (.tar.gz)")
    again.add_argument(
        "runs",
        nargs="*",
        metavar="RUN",
        help="run directories as the archive names them, or their ends; all: every run "
        "(default: the cheapest run of each loss)",
    )
    again.add_argument(
        "--epochs",
        type=whole(1),
        default=None,
        help="retrain this many epochs (default: all the archive has)",
    )
    again.add_argument(
        "--data",
        type=Path,
        default=None,
        metavar="DIR",
        help="where the prepared datasets are (default: as recorded, data/)",
    )
    again.add_argument(
        "--setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="retrain with this CPU setting instead of the recorded one (pipeline/core/settings.py; repeatable)",
    )
    again.add_argument("--out", type=Path, default=None, help="also write the lines to this file")
    again.add_argument("--check", action="store_true", help="exit with 1 if any run differs")
    again.set_defaults(run=handlers.reproduce)


def _verify_archive(commands, names):
    """`verify-archive`."""
    verify = commands.add_parser("verify-archive", help="re-check archives' checksums and Table I")
    verify.add_argument("archives", nargs="+", type=Path, help="softloss archives (.tar.gz), each checked")
    verify.set_defaults(run=handlers.verify_archive)


def _bench(commands, names):
    """`bench`."""
    bench = commands.add_parser("bench", help="train-step throughput beside PyTorch (and JAX on the CPU)")
    bench.add_argument(
        "--cases",
        nargs="+",
        default=None,
        metavar="MODEL:BATCH",
        help="e.g. mnist_cnn:128 (default: knet_softmax:100 mnist_cnn:128 cifar_cnn:32 cifar_cnn:128)",
    )
    bench.add_argument(
        "--steps", type=whole(1), default=None, help="steps per timed block (default: about 2048 images)"
    )
    bench.add_argument(
        "--repeats", type=whole(1), default=3, help="timed blocks per framework (median reported)"
    )
    bench.add_argument(
        "--alone", action="store_true", help="time softloss only, not the installed yardsticks"
    )
    bench.add_argument(
        "--threads",
        type=whole(1),
        default=None,
        help="CPU threads for softloss and PyTorch alike (default: as many as BLAS has)",
    )
    bench.add_argument(
        "--backend",
        default="numpy",
        choices=BACKENDS,
        help="where softloss runs; PyTorch runs on the same kind of device (default numpy: CPU)",
    )
    bench.add_argument(
        "--compare",
        default=None,
        metavar="SETTING=A,B",
        help="time softloss alone under each value of a CPU setting, in turns in one process, each "
        f"against the first; SETTING is one of {', '.join(COMPARABLE)}",
    )
    bench.set_defaults(run=handlers.bench)


RESULTS_PARSERS = (_aggregate, _report, _toy, _archive, _snapshot, _reproduce, _verify_archive, _bench)
