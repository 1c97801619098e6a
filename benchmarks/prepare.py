"""Wall time and peak memory of `prepare`: real MNIST, and a full-size CIFAR-10
binary archive (50,000 + 10,000 generated records in the real format).

    python benchmarks/prepare.py [--workdir DIR]

Each measurement runs in a fresh child process, so its peak RSS is its own.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, resource, sys, time
from pipeline.datasets import prepare, registry
spec = registry.get(sys.argv[1])
if len(sys.argv) > 4:  # a generated archive: admit it by its own MD5
    import dataclasses
    remote = dataclasses.replace(spec.files[0], checksum=registry.Checksum("md5", sys.argv[4], "file"))
    spec = dataclasses.replace(spec, files=(remote,))
start = time.perf_counter()
prepare.prepare(spec, sys.argv[2], sys.argv[3], log=lambda *a: None)
print(json.dumps({"seconds": time.perf_counter() - start,
                  "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def cifar_archive(path, seed=0):
    rng = np.random.default_rng(seed)
    with tarfile.open(path, "w:gz", compresslevel=1) as archive:
        names = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
        for name in names:
            records = rng.integers(0, 256, (10_000, 3073), dtype=np.uint8)
            records[:, 0] %= 10
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            info.size = records.nbytes
            archive.addfile(info, io.BytesIO(records.tobytes()))
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


def measure(*args):
    result = subprocess.run(
        [sys.executable, "-c", CHILD, *map(str, args)], capture_output=True, text=True, cwd=REPO, check=True
    )
    return json.loads(result.stdout)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.workdir) as work:
        work = Path(work)
        mnist = measure("mnist", REPO / "data" / "raw" / "vendored" / "mnist", work / "mnist.h5")
        print(f"prepare mnist: {mnist['seconds']:.2f} s, peak {mnist['peak_mib']:.0f} MiB")
        raw = work / "cifar"
        raw.mkdir()
        md5 = cifar_archive(raw / "cifar-10-binary.tar.gz")
        cifar = measure("cifar10", raw, work / "cifar10.h5", md5)
        print(
            f"prepare cifar10 (60,000 generated records): {cifar['seconds']:.2f} s, peak {cifar['peak_mib']:.0f} MiB"
        )


if __name__ == "__main__":
    main()
