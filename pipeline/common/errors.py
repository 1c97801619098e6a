"""Errors meant for users: the CLI prints their message, not a traceback."""


class SoftlossError(Exception):
    """A problem with the user's input, data, environment or network."""


class DataError(SoftlossError, ValueError):
    """A dataset file is missing, corrupt, truncated or of the wrong kind."""


class FetchError(SoftlossError, OSError):
    """Every source of a file failed."""
