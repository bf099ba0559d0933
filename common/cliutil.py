"""What both CLIs share: one-line argparse errors and the top-level handler."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

from .checks import clean
from .errors import EX_INTERRUPTED, EX_SOFTWARE, EX_UNAVAILABLE, EX_USAGE, MEANING, TrainboxError

# The exit codes, for a top-level --help (common/errors.py has the table).
EXIT_CODES_EPILOG = (
    "exit codes: 0 success; "
    + "; ".join(f"{c} {m}" for c, m in MEANING.items())
    + f" ({EX_UNAVAILABLE}: after retries; {EX_SOFTWARE}: rerun with --debug and report it)"
)


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (what, and where to look), exit 64 (EX_USAGE)."""

    def error(self, message: str):  # noqa: D401 (argparse's API)
        self.exit(EX_USAGE, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {value}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not 0 < value < float("inf"):  # nan and inf too
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def say(message: str) -> None:
    """Progress for the user: stderr, so stdout stays clean for results. It may
    quote the box: terminal control sequences are taken out (checks.clean)."""
    print(clean(message), file=sys.stderr, flush=True)


_said: set[str] = set()


def say_once(message: str) -> None:
    """say(message), unless this process has said it already (a command may look a box up twice)."""
    if message not in _said:
        _said.add(message)
        say(message)


def sandbox_note(name: str, where: str = "on this machine") -> None:
    """Which place a box found by its name alone lives in: said once, on stderr (``where``: the
    address a command that reaches the box connects to)."""
    say_once(f"box '{name}' is a sandbox box ({where})")


def run_cli(handler: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    if not args.debug:
        # paramiko's reader thread logs a reset link ("Socket exception: Connection reset by peer") at ERROR;
        # the command says it once, as its own line (remote/connection.py, LinkDropped).
        logging.getLogger("paramiko").setLevel(logging.CRITICAL)
    try:
        return handler(args) or 0
    except TrainboxError as e:
        if args.debug:
            raise
        print(f"error: {clean(str(e))}", file=sys.stderr)
        if e.after:
            print(clean(e.after), file=sys.stderr)  # whose code this is (a run's), the last line
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EX_INTERRUPTED
    except Exception as e:  # a bug of ours: one line, the traceback with --debug
        if args.debug:
            raise
        print(
            clean(f"error: unexpected {type(e).__name__}: {e} (rerun with --debug for the traceback)"), file=sys.stderr
        )
        return EX_SOFTWARE
