"""The box's environment build (the bootstrap, over a real sshd as a fresh
login user, installing from a package index on 127.0.0.1) cut by a dropped
link, and filled by a full disk, at the moment the install reaches keras (the
index holds keras back: tests/box/box_fixtures.py's gate). What must hold:
one line naming what happened and `remote setup`; nothing half-built looks
ready; `remote setup` again builds it."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "box"))

from box_fixtures import box_user, index, users_sshd  # noqa: E402,F401 (fixtures)
from box_helpers import box_python_says, env, marker_of, one_line_error, popen_cli, run_cli, wait_for  # noqa: E402
from linkkit import cut, of_fixture  # noqa: E402

from common.errors import RemoteError  # noqa: E402
from remote import setup  # noqa: E402

KERAS = f"keras-{setup.KERAS_VERSION}-py3-none-any.whl"


def test_a_link_cut_during_the_environment_build_is_one_line_and_setup_again_builds_it(users_sshd, box_user, index):
    server = of_fixture(*users_sshd)
    gate = index.gate(KERAS)
    p = popen_cli(*box_user.remote("setup"), env=env(index))
    try:
        wait_for(lambda: KERAS in index.requested, "the install to reach keras")
        cut(server, "trainbox/bootstrap.sh")
        gate.set()
        out, err = p.communicate(timeout=120)
    finally:
        gate.set()
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == RemoteError.exit_code, err

    class R:
        pass

    r = R()
    r.err = err
    line = one_line_error(r)
    assert "the link to the box dropped during the environment's setup" in line, line
    assert "remote setup" in line, line
    assert not marker_of(box_user).exists(), "a cut build never looks ready"

    again = run_cli(*box_user.remote("setup"), env=env(index))
    assert again.code == 0, again.err
    assert marker_of(box_user).exists()
    assert box_python_says(box_user, "import keras; print(keras.__version__)") == setup.KERAS_VERSION
