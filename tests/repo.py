"""Where the tests find the checkout's own files: the package finds them from
the working directory, the tests from here, wherever pytest runs."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VENDOR_DIR = REPO / "data" / "raw" / "vendored"  # the project's own dataset copies (pipeline.datasets.fetch)
