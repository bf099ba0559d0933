"""Helpers the remote tests import (conftest.py modules are not importable
by name when several directories have one)."""
from __future__ import annotations

from testkit import processes_mentioning, wait_for  # noqa: F401 (re-exported for the remote tests)


def one_line_error(result) -> str:
    lines = [l for l in result.err.strip().splitlines() if l.strip()]
    assert lines and "Traceback" not in result.err, result.err
    assert lines[-1].startswith("error: "), result.err
    return lines[-1]
