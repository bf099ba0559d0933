"""A full disk on the box (docs/reliability.md): a size-limited tmpfs mounted
under the box's workdir (as root; unmounted in teardown), filled by the push
itself. What must hold: one line naming the full disk and what to do; no
half-written file left under its name; once space is freed, the same push
completes and sends only what is missing."""

from __future__ import annotations

import os
import subprocess

import pytest
from linkkit import start_sshd, stop_sshd, target
from test_link_cuts import MB, project, whole_or_absent

from common.errors import RemoteError
from remote import sync
from remote.connection import LinkDropped, connect


@pytest.fixture
def small_disk(tmp_path):
    """A 6 MB tmpfs at tmp_path/box/data (the box's data folder)."""
    if os.geteuid() != 0:
        if os.environ.get("TRAINBOX_REQUIRE_CONTAINER") == "1":
            pytest.fail("mounting a small file system under the box needs root")
        pytest.skip("mounting a small file system under the box needs root")
    mnt = tmp_path / "box" / "data"
    mnt.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "trainbox-test-full", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


@pytest.fixture
def server(tmp_path, trainbox_home):
    s = start_sshd(tmp_path / "sshd")
    yield s
    stop_sshd(s)


@pytest.mark.parametrize("big", [2, 20], ids=["paramiko", "openssh"])
def test_a_push_that_fills_the_disk_says_so_in_one_line_and_keeps_no_half_file(server, small_disk, tmp_path, big):
    src = project(tmp_path / f"proj{big}", big=big, big_size=MB if big > 2 else 4 * MB)  # 8 or 20 MB into 6 MB
    dest = small_disk / "set"
    conn = connect(target(server, tmp_path / "box"), timeout=10)
    try:
        with pytest.raises(RemoteError) as e:
            sync.push(conn, src, str(dest))
        assert not isinstance(e.value, LinkDropped)
        line = str(e.value)
        assert "\n" not in line
        assert "the box's disk is full" in line and "KB free" in line, line
        assert "free space on the box" in line and "run the same command again" in line, line
        assert not (dest / sync.MARKER).exists()
        whole, absent = whole_or_absent(src, dest)
        assert whole and absent, (whole, absent)

        # The user frees space (here: the file system grows); the same push completes.
        subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
        plan = sync.push(conn, src, str(dest))
        assert (dest / sync.MARKER).exists() and whole_or_absent(src, dest)[1] == 0
        assert plan.send_bytes <= absent, "what arrived whole before is not sent again"
    finally:
        conn.close()
