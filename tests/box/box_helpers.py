"""Small helpers for the box tests: polling with a deadline (never a bare sleep) and one-line errors."""
from __future__ import annotations

import testkit

from dataclasses import dataclass


@dataclass
class Result:
    code: int
    out: str
    err: str


def wait_for(predicate, what: str, timeout: float = 90.0, every: float = 0.05):
    """testkit.wait_for, with the box tests' argument order."""
    return testkit.wait_for(what, predicate, timeout, every)


def one_line_error(result) -> str:
    lines = [line for line in result.err.strip().splitlines() if line.strip() and line.startswith("error:")]
    assert len(lines) == 1, result.err
    assert "Traceback" not in result.err
    return lines[0]
