"""Exceptions that carry an exit code; the CLI turns them into one line.

Library code raises these and never prints or exits. Messages follow the
house rule: what went wrong, why, and what to do next.
"""


class ModelError(Exception):
    """Base class. ``exit_code`` is what ``python -m model`` exits with."""

    exit_code = 1


class UsageError(ModelError):
    """Bad arguments or bad input (a data layout, a missing file): exit 2."""

    exit_code = 2


class DataError(UsageError):
    """The data folder does not have the expected layout or content."""


class TrainingError(ModelError):
    """Training ran but failed (NaN loss, a crash inside fit): exit 1."""

    exit_code = 1
