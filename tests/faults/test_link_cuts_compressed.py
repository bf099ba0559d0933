"""A compressed push (remote/wirecodec.py) cut midway: the guarantees of
test_link_cuts.py hold when the box's decoder sits between the link and
tar -x. The session serving the push (its `tar -x`) is killed by pid once
half the file bytes are sent and the box holds them; then the same push
runs again."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
from linkkit import start_sshd, stop_sshd, target
from test_link_cuts import CutAt, whole_or_absent

from remote import sync
from remote.connection import LinkDropped, connect

MB = 1 << 20
WORDS = "model layer epoch batch return import self data loss def optimizer tensor".split()


@pytest.fixture
def server(tmp_path, trainbox_home):
    s = start_sshd(tmp_path / "sshd")
    yield s
    stop_sshd(s)


def project(root: Path) -> Path:
    """12 MB of text (compressed) between 12 MB of random blobs (sent raw): 24 MB, OpenSSH's path."""
    rng = random.Random(0)
    for i in range(12):
        p = root / "src" / f"part{i:02}.txt"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(" ".join(rng.choice(WORDS) for _ in range(MB // 6))[:MB])
        (root / f"blob{i:02}.bin").write_bytes(os.urandom(MB))
    return root


@pytest.mark.parametrize("how", ["zstd", "gzip"])
def test_a_compressed_push_cut_midway_leaves_files_whole_or_absent_and_resumes_with_the_remainder(
    server, tmp_path, how
):
    src = project(tmp_path / "proj")
    dest = tmp_path / "box" / "data"
    conn = connect(target(server, tmp_path / "box"), timeout=10)
    try:
        bar = CutAt(server, src, dest, at=0.5)
        with pytest.raises(LinkDropped) as e:
            sync.push(conn, src, str(dest), bar, compress=how)
        assert bar.cut and "run the same command again" in str(e.value)
        assert not (dest / sync.MARKER).exists(), "a cut push never looks complete"
        # The box's side went on after the cut (its decoder and tar saw the end of
        # their input, then it removed what it did not finish): CutAt waited for it.
        whole, remainder = whole_or_absent(src, dest)
        assert whole and remainder, (whole, remainder)
        plan = sync.push(conn, src, str(dest), compress=how)
        assert (dest / sync.MARKER).exists() and whole_or_absent(src, dest)[1] == 0
        # Uncompressed, the second stream is the remainder and its headers; compressed, less.
        assert plan.tar_bytes <= 1.05 * remainder, (plan.tar_bytes, remainder)
        assert plan.sent_bytes < plan.tar_bytes
        assert sync.push(conn, src, str(dest), compress=how).noop
    finally:
        conn.close()
