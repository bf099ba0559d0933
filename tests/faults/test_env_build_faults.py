"""The box's environment build (the bootstrap, over a real sshd as a fresh
login user, installing from a package index on 127.0.0.1) cut by a dropped
link, and filled by a full disk, at the moment the install reaches keras (the
index holds keras back: tests/box/box_fixtures.py's gate). What must hold:
one line naming what happened and `remote setup`; nothing half-built looks
ready; `remote setup` again builds it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "box"))

from box_fixtures import box_user, index, kill_user_processes, users_sshd  # noqa: E402,F401 (fixtures)
from box_helpers import box_python_says, env, log_of, marker_of, one_line_error, popen_cli, run_cli, wait_for  # noqa: E402
from linkkit import cut, of_fixture  # noqa: E402

from common.errors import RemoteError  # noqa: E402
from remote import setup  # noqa: E402
from testkit import Result  # noqa: E402

KERAS = f"keras-{setup.KERAS_VERSION}-py3-none-any.whl"


def setup_with_a_fault_at_keras(box_user, index, fault):
    """`remote setup` with fault() done once the install reaches keras (held back
    by the index until then); its one error line (exit 69) and what fault() returned."""
    gate = index.gate(KERAS)
    p = popen_cli(*box_user.remote("setup"), env=env(index))
    try:
        wait_for(lambda: KERAS in index.requested, "the install to reach keras")
        done = fault()
        gate.set()
        out, err = p.communicate(timeout=120)
    finally:
        gate.set()
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == RemoteError.exit_code, err
    return one_line_error(Result(p.returncode, out, err)), done


def test_a_link_cut_during_the_environment_build_is_one_line_and_setup_again_builds_it(users_sshd, box_user, index):
    server = of_fixture(*users_sshd)
    line, _ = setup_with_a_fault_at_keras(box_user, index, lambda: cut(server, "trainbox/bootstrap.sh"))
    assert "the link to the box dropped during the environment's setup" in line, line
    assert "remote setup" in line, line
    assert not marker_of(box_user).exists(), "a cut build never looks ready"

    again = run_cli(*box_user.remote("setup"), env=env(index))
    assert again.code == 0, again.err
    assert marker_of(box_user).exists()
    assert box_python_says(box_user, "import keras; print(keras.__version__)") == setup.KERAS_VERSION


@pytest.fixture
def small_volume(box_user, tmp_path):
    """The box user's workdir (~/trainbox) on its own ext4 file system, a
    sparse loop-mounted image just over what the bootstrap's check asks
    (setup.CPU_FREE_MB), owned by the user; unmounted in teardown."""
    image = tmp_path / "workdir.img"
    subprocess.run(["truncate", "-s", f"{setup.CPU_FREE_MB + 200}M", str(image)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-m", "0", str(image)], check=True)
    mnt = box_user.home / "trainbox"
    mnt.mkdir()
    subprocess.run(["mount", "-o", "loop", str(image), str(mnt)], check=True)
    uid, gid = box_user.home.stat().st_uid, box_user.home.stat().st_gid
    try:
        os.chown(mnt, uid, gid)
        yield mnt
    finally:
        kill_user_processes(uid)  # a bootstrap still running there keeps the mount busy
        wait_for(lambda: subprocess.run(["umount", "-d", str(mnt)]).returncode == 0, "the test's volume to unmount", 30)


def fill(mnt: Path, user: str) -> list[Path]:
    """Take every block of mnt the box user could write: fallocate all but
    64 MB (no data written), then zeros, as that user, until the file system
    says it is full (ext4 keeps a few blocks back from root); the fillers."""
    st = os.statvfs(mnt)
    fillers = [mnt / "filler", mnt / "filler-rest"]
    subprocess.run(["fallocate", "-l", str(st.f_bfree * st.f_frsize - (64 << 20)), str(fillers[0])], check=True)
    rest = subprocess.run(
        ["runuser", "-u", user, "--", "dd", "if=/dev/zero", f"of={fillers[1]}", "bs=64k"],
        capture_output=True,
        text=True,
    )
    assert "No space left on device" in rest.stderr, rest.stderr
    return fillers


def test_a_disk_filled_during_the_environment_build_is_one_line_and_setup_again_builds_it(
    box_user, index, small_volume
):
    line, fillers = setup_with_a_fault_at_keras(box_user, index, lambda: fill(small_volume, box_user.name))
    assert "disk full" in line and "free space" in line and "remote setup" in line, line
    assert not marker_of(box_user).exists(), "a build cut by a full disk never looks ready"
    assert "No space left on device" in log_of(box_user)

    for f in fillers:  # the user frees space
        f.unlink()
    again = run_cli(*box_user.remote("setup"), env=env(index))
    assert again.code == 0, again.err
    assert box_python_says(box_user, "import keras; print(keras.__version__)") == setup.KERAS_VERSION
