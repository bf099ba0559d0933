"""Helpers the remote tests import (conftest.py modules are not importable
by name when several directories have one)."""

from __future__ import annotations

from testkit import processes_mentioning, wait_for  # noqa: F401 (re-exported for the remote tests)


def one_line_error(result) -> str:
    """The error's line: the last on stderr, or the one before a run's
    last line (whose exit code it is, see whose_line)."""
    lines = [l for l in result.err.strip().splitlines() if l.strip()]
    assert lines and "Traceback" not in result.err, result.err
    if lines[-1].startswith("remote: ") and len(lines) > 1:
        lines = lines[:-1]
    assert lines[-1].startswith("error: "), result.err
    return lines[-1]


def whose_line(result) -> str:
    """A run's last stderr line: whose exit code it is (common/errors.py)."""
    lines = [l for l in result.err.strip().splitlines() if l.strip()]
    assert lines and lines[-1].startswith("remote: "), result.err
    return lines[-1]
