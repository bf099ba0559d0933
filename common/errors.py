"""The errors trainbox raises, and the exit code each one maps to.

Library code raises these; only the CLIs' top-level handler turns them into
one line on stderr and an exit code (docs/architecture.md, "The parts and their contracts").
"""
from __future__ import annotations

import shlex


class TrainboxError(Exception):
    """Something the user can act on: what went wrong, and what to do next."""

    exit_code = 3

    def __init__(self, what: str, fix: str | None = None):
        super().__init__(what)
        self.what = what
        self.fix = fix

    def __str__(self) -> str:
        return f"{self.what}: {self.fix}" if self.fix else self.what


class UsageError(TrainboxError):
    """Bad usage or bad input (exit 2)."""

    exit_code = 2


class CloudError(TrainboxError):
    """AWS refused or failed after retries (exit 3)."""

    exit_code = 3


class RemoteError(TrainboxError):
    """The box could not be reached or answered an error (exit 3)."""

    exit_code = 3


class TrainingFailed(TrainboxError):
    """The training job on the box exited non-zero (exit 1)."""

    exit_code = 1


def name_flag(name: str) -> str:
    """The ``--name NAME`` a suggested command repeats ("" for the default box)."""
    return "" if name == "default" else f" --name {shlex.quote(name)}"


def no_box(name: str, otherwise: str = "") -> UsageError:
    """No box called name is up: start one (``otherwise``: another way out, e.g. ``--host``)."""
    return UsageError(f"no box named '{name}' is up",
                      f"start one with `python -m provision up{name_flag(name)}`" + (f" ({otherwise})" if otherwise else ""))
