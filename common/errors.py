"""The errors trainbox raises, and the exit code each one maps to.

Library code raises these; only the CLIs' top-level handler
(common/cliutil.run_cli) turns them into one line on stderr and an exit code
(docs/architecture.md, "The parts and their contracts").

Exit codes: trainbox's own are sysexits(3) codes and 130, apart from any
code a small program of yours is likely to exit with, so a script can tell
whose code it got::

    0    success
    N    `remote run` / `remote train`: the job exited N (your command's own
         code, passed through; a job killed by signal S: 128+S, e.g. 143 for
         the TERM of `remote stop`; a job that died leaving no code: 137)
    64   bad usage or input (EX_USAGE): UsageError, argparse's errors too
    69   a cloud or SSH error after retries (EX_UNAVAILABLE): CloudError,
         RemoteError, and any other TrainboxError
    70   a bug of trainbox's (EX_SOFTWARE): an unexpected exception
    130  interrupted by Ctrl-C (and `remote run` detached by Ctrl-C)

The last line on stderr says whose code it is: ``error: WHAT: FIX`` for
trainbox's own, ``remote: your command exited N (its own code, passed
through)`` for a run whose command failed, and ``remote: trainbox: exit 69
(...); your command ...`` when trainbox failed during a run.
"""

from __future__ import annotations

import shlex

EX_USAGE = 64
EX_UNAVAILABLE = 69
EX_SOFTWARE = 70
EX_INTERRUPTED = 130
SIGKILLED = 128 + 9  # a job that died leaving no exit code (killed with its run.sh)
SIGTERMED = 128 + 15  # a job `remote stop` ended (its TERM)

# What each of trainbox's own codes means, in the words its messages use.
MEANING = {
    EX_USAGE: "bad usage or input",
    EX_UNAVAILABLE: "a cloud or SSH error",
    EX_SOFTWARE: "a bug of trainbox's",
    EX_INTERRUPTED: "interrupted",
}


class TrainboxError(Exception):
    """Something the user can act on: what went wrong, and what to do next.

    ``after``: a last line for stderr, printed after the error's own (whose
    exit code this is, during a run: cli/remote_follow.py sets it)."""

    exit_code = EX_UNAVAILABLE
    after: str | None = None

    def __init__(self, what: str, fix: str | None = None):
        super().__init__(what)
        self.what = what
        self.fix = fix

    def __str__(self) -> str:
        return f"{self.what}: {self.fix}" if self.fix else self.what


class UsageError(TrainboxError):
    """Bad usage or bad input (exit 64, EX_USAGE)."""

    exit_code = EX_USAGE


class CloudError(TrainboxError):
    """AWS refused or failed after retries (exit 69, EX_UNAVAILABLE)."""

    exit_code = EX_UNAVAILABLE


class RemoteError(TrainboxError):
    """The box could not be reached or answered an error (exit 69, EX_UNAVAILABLE)."""

    exit_code = EX_UNAVAILABLE


class TrainingFailed(TrainboxError):
    """The job on the box did not succeed: exits with the job's own code
    (passed through; ``exit_code`` is set per instance), the last line on
    stderr saying so."""

    exit_code = SIGKILLED

    def __init__(self, what: str, fix: str | None = None, *, code: int | None = None, after: str | None = None):
        super().__init__(what, fix)
        if code is not None:
            self.exit_code = code
        self.after = after or f"remote: your command exited {self.exit_code} (its own code, passed through)"


def name_flag(name: str) -> str:
    """The ``--name NAME`` a suggested command repeats ("" for the default box)."""
    return "" if name == "default" else f" --name {shlex.quote(name)}"
