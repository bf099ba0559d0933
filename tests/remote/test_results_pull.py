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
    assert sorted(results.pull(conn, str(run), home, only="checkpoints")) == [
        "checkpoints/best.keras",
        "checkpoints/last.keras",
    ]
    assert results.pull(conn, str(run), home, only="checkpoints") == [], "nothing changed: nothing sent"

    (run / "out" / "checkpoints" / "last.keras").write_bytes(b"last, the next epoch")
    os.utime(run / "out" / "checkpoints" / "last.keras", (1_700_007_200, 1_700_007_200))
    assert results.pull(conn, str(run), home, only="checkpoints") == ["checkpoints/last.keras"]
    assert (home / "checkpoints" / "last.keras").read_bytes() == b"last, the next epoch"


def test_a_full_pull_mirrors_what_the_box_deleted_among_the_files_trainbox_pulled(conn, box, tmp_path):
    """Issue 27: a mid-run pull brought backup/ (Keras's BackupAndRestore
    state); Keras deleted it on the box at the end; the final pull removes it
    here too. Only files an earlier pull wrote, unchanged since: never the
    user's own files, not even inside the run's folder or backup/."""
    run = make_run(box.workdir)
    (run / "out" / "backup").mkdir()
    (run / "out" / "backup" / "training_metadata.json").write_text('{"epoch": 1}')
    (run / "out" / "backup" / "latest.weights.h5").write_bytes(b"weights")
    (run / "out" / "old.txt").write_text("the box removes me too, and I was edited here")
    home = tmp_path / "home"
    mid = results.pull(conn, str(run), home)
    assert "backup/latest.weights.h5" in mid and (home / "backup" / "training_metadata.json").exists()
    (home / "notes.txt").write_text("the user's own")
    (home / "backup" / "mine.txt").write_text("the user's own, in backup/")
    (home / "old.txt").write_text("edited on the laptop: now the user's")

    # The run ends: Keras removes its backup folder, the box's code its old file.
    for f in (run / "out" / "backup").iterdir():
        f.unlink()
    (run / "out" / "backup").rmdir()
    (run / "out" / "old.txt").unlink()
    (run / "out" / "history.csv").write_text("epoch,loss\n1,0.5\n2,0.4\n")
    final = results.pull(conn, str(run), home)
    assert "history.csv" in final
    assert not (home / "backup" / "training_metadata.json").exists()
    assert not (home / "backup" / "latest.weights.h5").exists()
    assert (home / "backup" / "mine.txt").read_text() == "the user's own, in backup/"
    assert (home / "notes.txt").read_text() == "the user's own"
    assert (home / "old.txt").read_text() == "edited on the laptop: now the user's"
    assert (home / "checkpoints" / "best.keras").exists() and (home / "train.log").exists()


def test_a_box_that_deletes_everything_empties_only_what_was_pulled_and_its_empty_folders(conn, box, tmp_path):
    run = make_run(box.workdir)
    (run / "out" / "backup").mkdir()
    (run / "out" / "backup" / "latest.weights.h5").write_bytes(b"weights")
    home = tmp_path / "home"
    results.pull(conn, str(run), home)
    (run / "out" / "backup" / "latest.weights.h5").unlink()
    (run / "out" / "backup").rmdir()
    results.pull(conn, str(run), home)
    assert not (home / "backup").exists(), "an emptied folder trainbox made goes too"
    # A checkpoint-only pull mid-run never deletes: it lists only checkpoints/.
    (run / "out" / "checkpoints" / "best.keras").unlink()
    assert results.pull(conn, str(run), home, only="checkpoints") == []
    assert (home / "checkpoints" / "best.keras").exists()


def test_a_box_file_named_like_the_pull_record_never_replaces_it(conn, box, tmp_path):
    run = make_run(box.workdir)
    (run / "out" / results.PULLED).write_text('{"../../etc/passwd": [1, 1]}')
    home = tmp_path / "home"
    got = results.pull(conn, str(run), home)
    assert results.PULLED not in got
    assert "../../etc/passwd" not in (home / results.PULLED).read_text()
