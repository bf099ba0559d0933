"""synth: the course layout, deterministic for a seed."""

import hashlib
import os

from model.class_folders import scan_folders
from model.cli import main


def digest(root):
    h = hashlib.sha256()
    for dirpath, _, files in sorted(os.walk(root)):
        for name in sorted(files):
            h.update(os.path.relpath(os.path.join(dirpath, name), root).encode())
            with open(os.path.join(dirpath, name), "rb") as f:
                h.update(f.read())
    return h.hexdigest()


def test_synth_writes_course_layout(tmp_path, capsys):
    out = str(tmp_path / "d")
    assert main(["synth", "--out", out, "--n", "10", "--image-size", "24", "--seed", "3"]) == 0
    folders = scan_folders(out)
    assert folders.classes == ["cats", "dogs"]
    assert folders.counts() == {"train": {"cats": 8, "dogs": 8}, "validation": {"cats": 2, "dogs": 2}}
    assert not folders.skipped
    assert {(f.width, f.height) for f in folders.train} == {(24, 24)}
    assert "wrote 20 images" in capsys.readouterr().out


def test_synth_is_deterministic(tmp_path):
    for name in ("a", "b"):
        assert main(["synth", "--out", str(tmp_path / name), "--n", "6", "--image-size", "16", "--seed", "7"]) == 0
    main(["synth", "--out", str(tmp_path / "c"), "--n", "6", "--image-size", "16", "--seed", "8"])
    assert digest(tmp_path / "a") == digest(tmp_path / "b") != digest(tmp_path / "c")


def test_synth_rejects_tiny_n(tmp_path, capsys):
    assert main(["synth", "--out", str(tmp_path / "d"), "--n", "1"]) == 2
    assert "--n 1" in capsys.readouterr().err
