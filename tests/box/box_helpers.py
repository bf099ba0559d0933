"""Small helpers for the box tests: the CLI, the box user's files, polling with a
deadline (never a bare sleep) and one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import testkit
from testkit import run_cli  # noqa: F401 (the real CLI in a subprocess)


def popen_cli(*argv, env):
    full = {**os.environ, **env, "PYTHONPATH": str(testkit.REPO)}
    return subprocess.Popen(
        [sys.executable, "-m", *argv], env=full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def env(index, **extra) -> dict:
    """The laptop CLI's environment: the box installs from index, without jupyterlab, and an
    unreachable index fails at once (one retry, which pip needs to say why; the loopback is not flaky)."""
    return {"TRAINBOX_INDEX_URL": index.url, "TRAINBOX_JUPYTER": "0", "TRAINBOX_INSTALL_RETRIES": "1", **extra}


def marker_of(user, workdir="trainbox") -> Path:
    return user.home / workdir / "env" / "trainbox-ready"


def log_of(user, workdir="trainbox") -> str:
    f = user.home / workdir / "setup.log"
    return f.read_text() if f.exists() else ""


def as_user(user, *argv: str) -> str:
    """Run argv as the box user; its stdout."""
    p = subprocess.run(["runuser", "-u", user.name, "--", *argv], capture_output=True, text=True, cwd="/")
    assert p.returncode == 0, p.stderr
    return p.stdout.strip()


def box_python_says(user, code: str) -> str:
    """Run code with the box env's python, as the box user."""
    return as_user(user, str(user.home / "trainbox" / "env" / "bin" / "python"), "-c", code)


def wait_for(predicate, what: str, timeout: float = 90.0, every: float = 0.05):
    """testkit.wait_for, with the box tests' argument order."""
    return testkit.wait_for(what, predicate, timeout, every)


def one_line_error(result) -> str:
    lines = [line for line in result.err.strip().splitlines() if line.strip() and line.startswith("error:")]
    assert len(lines) == 1, result.err
    assert "Traceback" not in result.err
    return lines[0]
