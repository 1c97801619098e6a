"""softloss: classification losses as differentiable NumPy programs (see README.md)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("softloss")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.1.0+source"
