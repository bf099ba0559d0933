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
from remote import setup

SHOW = "import tinydep; print('tinydep', tinydep.VERSION)"


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


def rows_of(out: str) -> dict[str, str]:
    return {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in out.splitlines())}


def test_doctor_checks_the_projects_environment_too(box_user, index, tmp_path):
    import shutil

    from remote import orchestrate

    for v in ("1.0", "2.0"):
        make_wheel(index.dir, "tinydep", v, {"tinydep/__init__.py": f"VERSION = {v!r}\n"})
    code = project(tmp_path, "tinydep==1.0\n")
    e = env(index)
    doctor = box_user.remote("doctor", "--code", str(code))

    before = run_cli(*doctor, cwd=tmp_path, env=e)
    assert before.code == RemoteError.exit_code, before.err
    rows = rows_of(before.out)
    assert rows["project"] == f"{code} (requirements: {code / 'requirements.txt'})"
    assert rows["environment"].startswith("NOT READY: not built yet"), before.out
    assert f"`remote setup --code {code} --host {box_user.host}" in one_line_error(before)

    run = run_cli(
        *box_user.remote("run", "--code", str(code), "--pull-every", "600"),
        "--",
        "python",
        "hello.py",
        cwd=tmp_path,
        env=e,
    )
    assert run.code == 0, run.err
    ready = run_cli(*doctor, cwd=tmp_path, env=e)
    assert ready.code == 0, ready.err + ready.out
    rows = rows_of(ready.out)
    assert (rows["environment"], rows["requirements"]) == ("ready", "tinydep installed"), ready.out
    assert rows["keras"].startswith(setup.KERAS_VERSION), "the project environment's own versions"
    # From the project's folder, as `remote run` decides the project (--code .): the same check.
    here = run_cli(*box_user.remote("doctor"), cwd=code, env=e)
    assert here.code == 0 and rows_of(here.out)["requirements"] == "tinydep installed", here.out

    (code / "requirements.txt").write_text("tinydep==2.0\n")
    stale = run_cli(*doctor, cwd=tmp_path, env=e)
    assert stale.code == RemoteError.exit_code
    assert "requirements.txt changed since its environment was built" in rows_of(stale.out)["environment"], stale.out
    fix = re.findall(r"`([^`]*)` builds it anew", one_line_error(stale))[-1]
    assert fix.startswith(f"remote setup --code {code} ") and "--force" not in fix, fix
    fixed = run_cli(*fix.split(), cwd=tmp_path, env=e)  # the command it names, as given
    assert fixed.code == 0, fixed.err
    assert rows_of(run_cli(*doctor, cwd=tmp_path, env=e).out)["environment"] == "ready"
    assert (
        "tinydep 2.0"
        in run_cli(*box_user.remote("run", "--code", str(code)), "--", "python", "-c", SHOW, cwd=tmp_path, env=e).out
    )

    env_dir = Path(str(box_user.home / "trainbox" / f"env-{orchestrate.path_key(code)}"))
    for info in env_dir.resolve().glob("lib/python*/site-packages/tinydep-*.dist-info"):
        shutil.rmtree(info)  # installed once, gone since
    gone = run_cli(*doctor, cwd=tmp_path, env=e)
    assert gone.code == RemoteError.exit_code
    assert rows_of(gone.out)["requirements"] == "MISSING: tinydep", gone.out
    assert "tinydep is not installed" in one_line_error(gone)
    fix = re.findall(r"`([^`]*)` builds it anew", one_line_error(gone))[-1]
    assert fix.endswith(" --force"), "the environment looks ready: only --force builds it again"
    assert run_cli(*fix.split(), cwd=tmp_path, env=e).code == 0
    assert rows_of(run_cli(*doctor, cwd=tmp_path, env=e).out)["requirements"] == "tinydep installed"
