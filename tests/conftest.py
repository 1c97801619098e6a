import sys
from pathlib import Path

import pytest

# Test helpers (gradcheck.py, strictdevice.py) live beside the tests.
sys.path.insert(0, str(Path(__file__).parent))

from repo import VENDOR_DIR  # noqa: E402


@pytest.fixture(scope="session")
def mnist_h5(tmp_path_factory):
    """The vendored MNIST, prepared once per test session."""
    from pipeline.datasets import prepare

    out = tmp_path_factory.mktemp("data") / "mnist.h5"
    return prepare.prepare("mnist", VENDOR_DIR / "mnist", out, log=lambda *a: None)
