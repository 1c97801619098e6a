"""Where the tests find the checkout's own files: the package finds them from
the working directory, the tests from here, wherever pytest runs."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VENDOR_DIR = REPO / "data" / "raw" / "vendored"  # the project's own dataset copies (pipeline.datasets.fetch)
TINY = (REPO / ".test" / "config" / "config.yaml").read_text()  # the tiny study's config, one description


def args(line, **values):
    """The words of `line`, each `{name}` among them replaced whole by
    str(values[name]): a command line written as one, its paths free to hold spaces."""
    return [str(values[w[1:-1]]) if w[:1] == "{" and w[-1:] == "}" else w for w in line.split()]
