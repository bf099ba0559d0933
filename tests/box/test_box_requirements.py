"""Issue 27: a project's requirements.txt that does not install on the box is
the user's input, not trainbox's failure: exit 64 (UsageError), the
installer's tail once, the log brought home (its laptop path named) and the
command that retries. trainbox's own pins failing to install stays exit 69.

A fresh login user behind a real sshd, the bootstrap installing for real
from a package index on 127.0.0.1 (box_fixtures.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from box_fixtures import box_user, index, make_wheel, users_sshd, uv_index  # noqa: F401 (fixtures)
from box_helpers import env, log_of, one_line_error, run_cli

from common.errors import RemoteError, UsageError


def project(tmp_path: Path, requirements: str) -> Path:
    code = tmp_path / "proj"
    code.mkdir()
    (code / "hello.py").write_text("print('hello')\n")
    (code / "requirements.txt").write_text(requirements)
    return code


@pytest.mark.parametrize("installer", ["pip", "uv"])
def test_a_requirement_that_does_not_install_is_the_users_input(box_user, uv_index, tmp_path, installer):
    code = project(tmp_path, "nosuchpkg==9.9\n")
    argv = ["run", "--code", str(code), "--pull-every", "600"]
    r = run_cli(
        *box_user.remote(*argv),
        "--",
        "python",
        "hello.py",
        cwd=tmp_path,
        env=env(uv_index, TRAINBOX_INSTALLER=installer),
    )
    assert r.code == UsageError.exit_code, r.err
    error = one_line_error(r)
    assert f"the project's requirements ({code / 'requirements.txt'}) do not install on the box" in error
    (log_home,) = (tmp_path / "runs").glob("*/setup.log")
    assert f"full log: {log_home.relative_to(tmp_path)}" in error or f"full log: {log_home}" in error
    assert "nosuchpkg" in log_home.read_text() and log_home.stat().st_mode & 0o077 == 0
    assert str(box_user.home) not in error and "on the box)" not in r.err, "no log path that only exists on the box"
    retry = re.search(r"then rerun `([^`]*)`", error).group(1)
    assert retry.startswith("remote run --code ") and retry.endswith(" -- python hello.py"), retry
    # The installer's tail once: its lines naming the requirement, not repeated in the error line.
    tail_lines = [l for l in r.err.splitlines() if "nosuchpkg" in l and not l.startswith("error:")]
    assert tail_lines and len(tail_lines) == len(set(tail_lines)), r.err
    assert r.err.count("the install failed") == 1
    assert "nosuchpkg" not in error.split("do not install on the box")[1].split("full log")[0], (
        "the tail is not repeated"
    )
    assert r.err.strip().splitlines()[-1].startswith("remote: trainbox: exit 64 (bad usage or input)")
    assert not list((tmp_path / "runs").glob("*.json")), "a run that never started leaves no record"


def test_trainbox_pins_that_do_not_install_stay_trainboxs_error(box_user, index, tmp_path):
    make_wheel(index.dir, "tinydep", "1.0", {"tinydep/__init__.py": ""})
    for wheel in index.dir.glob("keras-*.whl"):
        wheel.unlink()  # trainbox's own pin is missing from the index
    code = project(tmp_path, "tinydep==1.0\n")
    r = run_cli(
        *box_user.remote("run", "--code", str(code), "--pull-every", "600"),
        "--",
        "python",
        "hello.py",
        cwd=tmp_path,
        env=env(index),
    )
    assert r.code == RemoteError.exit_code, r.err
    assert "do not install on the box" not in r.err and "keras" in log_of(box_user)
