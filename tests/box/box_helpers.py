"""Small helpers for the box tests: polling with a deadline (never a bare sleep) and one-line errors."""
from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass
class Result:
    code: int
    out: str
    err: str


def wait_for(predicate, what: str, timeout: float = 90.0, every: float = 0.05):
    """Poll predicate until it is truthy; fail the test naming what never happened."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def one_line_error(result) -> str:
    lines = [line for line in result.err.strip().splitlines() if line.strip() and line.startswith("error:")]
    assert len(lines) == 1, result.err
    assert "Traceback" not in result.err
    return lines[0]
