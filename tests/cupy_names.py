"""Regenerate tests/cupy_names.json: the names CuPy's published API has, which
the strict stand-in (tests/strictdevice.py) allows and nothing more.

CuPy imports on a machine without a GPU (its arrays then fail with
cudaErrorInsufficientDriver), so its namespace can be read anywhere:

    python -m venv /tmp/cupy && /tmp/cupy/bin/pip install cupy-cuda12x
    /tmp/cupy/bin/python tests/cupy_names.py
"""

import json
from pathlib import Path

import cupy
import cupy.lib.stride_tricks
import cupy.linalg
import cupy.random


def public(namespace):
    return sorted(name for name in dir(namespace) if not name.startswith("_"))


NAMES = {
    "version": cupy.__version__,
    "cupy": public(cupy),
    "cupy.lib.stride_tricks": public(cupy.lib.stride_tricks),
    "cupy.linalg": public(cupy.linalg),
    "cupy.random": public(cupy.random),
    "cupy.random.Generator": public(cupy.random.Generator),
    "cupy.ndarray": public(cupy.ndarray),
    "cupy.ufunc": public(cupy.ufunc),
}

if __name__ == "__main__":
    out = Path(__file__).with_name("cupy_names.json")
    out.write_text(json.dumps(NAMES, indent=1, sort_keys=True) + "\n")
    print(
        f"{out}: CuPy {NAMES['version']}, {sum(len(v) for v in NAMES.values() if isinstance(v, list))} names"
    )
