import sys
from pathlib import Path

import pytest

# Test helpers (gradcheck.py, strictdevice.py) live beside the tests.
sys.path.insert(0, str(Path(__file__).parent))
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def mnist_h5(tmp_path_factory):
    """The vendored MNIST, prepared once per test session."""
    from pipeline import data

    out = tmp_path_factory.mktemp("data") / "mnist.h5"
    return data.prepare("mnist", REPO / "data" / "raw" / "vendored" / "mnist", out, log=lambda *a: None)
