"""Helpers the remote tests import (conftest.py modules are not importable
by name when several directories have one)."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from testkit import processes_mentioning  # noqa: F401 (re-exported for the remote tests)


def wait_for(what: str, check, timeout: float = 120.0, every: float = 0.1):
    """Poll check() until it returns something truthy; fail after timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(every)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")


def one_line_error(result) -> str:
    lines = [l for l in result.err.strip().splitlines() if l.strip()]
    assert lines and "Traceback" not in result.err, result.err
    assert lines[-1].startswith("error: "), result.err
    return lines[-1]
