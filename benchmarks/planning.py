"""How the workflow's planning grows with a sweep: the seconds of a dry run
(`snakemake -n`) of the tiny study with 1, 500, 2,000 and 4,000 seeds, and the
seconds per planned job beyond the first. Linear planning keeps that last
column flat; a quadratic step would grow it eightfold from 500 to 4,000.

    python benchmarks/planning.py
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TINY = (REPO / ".test" / "config" / "config.yaml").read_text().replace(", nllr: {lr: 0.05}", "")


def dry_run_seconds(seeds):
    with tempfile.TemporaryDirectory() as workdir:
        config = Path(workdir) / "sweep.yaml"
        config.write_text(TINY.replace("seeds: [1, 2]", f"seeds: {list(range(seeds))}"))
        command = [
            sys.executable,
            "-m",
            "snakemake",
            "-s",
            str(REPO / "Snakefile"),
            "-d",
            workdir,
            "--configfile",
            str(config),
            "-n",
            "--quiet",
            "reports/summary.html",
        ]
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, timeout=600)
        return time.perf_counter() - start


def main():
    base = dry_run_seconds(1)
    print(f"{'seeds':>6} {'seconds':>8} {'ms per job beyond the first':>28}")
    print(f"{1:>6} {base:>8.2f}")
    for seeds in (500, 2000, 4000):
        seconds = dry_run_seconds(seeds)
        print(f"{seeds:>6} {seconds:>8.2f} {1000 * (seconds - base) / (seeds - 1):>28.2f}")


if __name__ == "__main__":
    main()
