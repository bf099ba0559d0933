"""A full disk on the box (docs/reliability.md): a size-limited tmpfs mounted
under the box's workdir (as root; unmounted in teardown), filled by the push
itself. What must hold: one line naming the full disk and what to do; no
half-written file left under its name; once space is freed, the same push
completes and sends only what is missing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from linkkit import start_sshd, stop_sshd, target
from test_link_cuts import MB, project, whole_or_absent

from common.errors import RemoteError
from remote import sync
from remote.connection import LinkDropped, connect
from testkit import synth_image_set, wait_for

REPO = Path(__file__).resolve().parents[2]


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


LOADS = "import sys, keras; keras.saving.load_model(sys.argv[1]); print('loads')"


@pytest.mark.slow
def test_a_disk_filled_during_training_keeps_the_last_checkpoint_whole_and_the_run_resumes(tmp_path):
    """The model package as the box runs it (`python -m model train`), its
    run folder on a 64 MB tmpfs filled once the first checkpoint is written."""
    if os.geteuid() != 0:
        pytest.fail("mounting a small file system needs root (tests run as root)")
    data = synth_image_set(tmp_path / "set", n=40, size=32)
    mnt = tmp_path / "disk"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "trainbox-test-full", str(mnt)], check=True)
    try:
        out = mnt / "run"
        argv = [sys.executable, "-m", "model", "train", "--data", str(data), "--out", str(out)]
        argv += ["--epochs", "40", "--image-size", "32", "--batch-size", "8"]
        env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
        with open(tmp_path / "first.log", "w") as log:
            proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.PIPE, text=True)
            try:
                wait_for(
                    "the first checkpoint", lambda: (out / "checkpoints" / "last.keras").exists() or proc.poll(), 300
                )
                fill = subprocess.run(
                    ["dd", "if=/dev/zero", f"of={mnt / 'filler'}", "bs=64k"], capture_output=True, text=True
                )
                assert "No space left on device" in fill.stderr, fill.stderr
                _, err = proc.communicate(timeout=300)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        assert proc.returncode == 1, err
        (line,) = [l for l in err.splitlines() if l.startswith("error: ")]
        assert "the disk is full" in line and "run the same command again" in line, line
        assert "Traceback" not in err
        ckpts = out / "checkpoints"
        assert not [p.name for p in ckpts.iterdir() if ".tmp." in p.name], "no half-written checkpoint is left"
        loads = subprocess.run(
            [sys.executable, "-c", LOADS, str(ckpts / "last.keras")], env=env, capture_output=True, text=True
        )
        assert loads.stdout.strip() == "loads", loads.stderr[-500:]

        (mnt / "filler").unlink()  # space freed: the same command resumes and finishes
        again = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
        assert again.returncode == 0, again.stderr[-800:]
        assert "resuming from" in again.stdout
        assert (out / "model.keras").exists()
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
