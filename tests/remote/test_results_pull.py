"""results.pull against the real sshd: what a pull brings, and what it skips."""
from __future__ import annotations

import os
from pathlib import Path

from remote import results


def make_run(workdir: str) -> Path:
    run = Path(workdir) / "runs" / "r1"
    (run / "out" / "checkpoints").mkdir(parents=True)
    (run / "out" / "checkpoints" / "best.keras").write_bytes(b"best, an hour old")
    os.utime(run / "out" / "checkpoints" / "best.keras", (1_700_000_000, 1_700_000_000))
    (run / "out" / "checkpoints" / "last.keras").write_bytes(b"last, just saved")
    os.utime(run / "out" / "checkpoints" / "last.keras", (1_700_003_600, 1_700_003_600))
    (run / "out" / "history.csv").write_text("epoch,loss\n1,0.5\n")
    (run / "log").write_text("epoch 1/2\n")
    return run


def test_a_full_pull_brings_out_and_the_log(conn, box, tmp_path):
    run = make_run(box.workdir)
    got = results.pull(conn, str(run), tmp_path / "home")
    assert sorted(got) == ["checkpoints/best.keras", "checkpoints/last.keras", "history.csv", "train.log"]
    assert os.stat(tmp_path / "home" / "checkpoints" / "last.keras").st_mtime == 1_700_003_600


def test_a_checkpoint_pull_brings_only_what_changed_since_the_last(conn, box, tmp_path):
    run = make_run(box.workdir)
    home = tmp_path / "home"
    assert sorted(results.pull(conn, str(run), home, only="checkpoints")) == ["checkpoints/best.keras", "checkpoints/last.keras"]
    assert results.pull(conn, str(run), home, only="checkpoints") == [], "nothing changed: nothing sent"

    (run / "out" / "checkpoints" / "last.keras").write_bytes(b"last, the next epoch")
    os.utime(run / "out" / "checkpoints" / "last.keras", (1_700_007_200, 1_700_007_200))
    assert results.pull(conn, str(run), home, only="checkpoints") == ["checkpoints/last.keras"]
    assert (home / "checkpoints" / "last.keras").read_bytes() == b"last, the next epoch"
