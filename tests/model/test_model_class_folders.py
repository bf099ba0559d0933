"""Data layout validation: one-line errors (exit 2), unreadable files skipped and counted."""

import os
import shutil
import subprocess
import sys

import pytest

from model.class_folders import probe_image, scan_folders
from model.cli import main
from model.errors import DataError


def run_main(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def train_args(data, tmp_path):
    return ["train", "--data", data, "--out", tmp_path / "run", "--epochs", 1]


def assert_one_line_error(code, err, *words):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    assert "Traceback" not in err
    for w in words:
        assert w in lines[0]


def test_missing_split(layout_copy, tmp_path, capsys):
    shutil.rmtree(os.path.join(layout_copy, "validation"))
    code, _, err = run_main(capsys, *train_args(layout_copy, tmp_path))
    assert_one_line_error(code, err, "validation/", "organize")


def test_missing_data_folder(tmp_path, capsys):
    code, _, err = run_main(capsys, *train_args(tmp_path / "nope", tmp_path))
    assert_one_line_error(code, err, "does not exist")


def test_single_class(layout_copy, tmp_path, capsys):
    for split in ("train", "validation"):
        shutil.rmtree(os.path.join(layout_copy, split, "dogs"))
    code, _, err = run_main(capsys, *train_args(layout_copy, tmp_path))
    assert_one_line_error(code, err, "1 class folder", "cats", "at least two")


def test_empty_class(layout_copy, tmp_path, capsys):
    folder = os.path.join(layout_copy, "validation", "dogs")
    for name in os.listdir(folder):
        os.remove(os.path.join(folder, name))
    code, _, err = run_main(capsys, *train_args(layout_copy, tmp_path))
    assert_one_line_error(code, err, folder, "no readable image")


def test_class_only_holding_corrupt_files_is_empty(layout_copy):
    folder = os.path.join(layout_copy, "train", "dogs")
    for name in os.listdir(folder):
        with open(os.path.join(folder, name), "wb") as f:
            f.write(b"junk")
    with pytest.raises(DataError, match="no readable image"):
        scan_folders(layout_copy)


def test_splits_with_different_classes(layout_copy):
    os.makedirs(os.path.join(layout_copy, "validation", "birds"))
    with pytest.raises(DataError, match="differ between splits"):
        scan_folders(layout_copy)


def test_corrupt_files_are_skipped_and_counted(synth_data, caplog):
    folders = scan_folders(synth_data["root"])
    skipped = dict(folders.skipped)
    assert sorted(skipped) == sorted(synth_data["bad"])
    assert "truncated" in skipped[synth_data["bad"][1]]
    assert folders.counts() == {"train": {"cats": 160, "dogs": 160}, "validation": {"cats": 40, "dogs": 40}}
    assert all(f.path not in skipped for f in folders.train)
    assert "skipped 2 unreadable" in caplog.text


def test_non_image_file_is_skipped_and_hidden_files_ignored(layout_copy):
    folder = os.path.join(layout_copy, "train", "cats")
    with open(os.path.join(folder, "notes.txt"), "w") as f:
        f.write("hello")
    with open(os.path.join(folder, ".DS_Store"), "wb") as f:
        f.write(b"\0")
    folders = scan_folders(layout_copy)
    assert [os.path.basename(p) for p, _ in folders.skipped] == ["notes.txt"]


def test_strict_refuses_corrupt_file(synth_data, tmp_path, capsys):
    code, _, err = run_main(capsys, *train_args(synth_data["root"], tmp_path), "--strict")
    assert_one_line_error(code, err, "cat.9001.jpg", "--strict")


def test_probe_reads_header_size(small_data):
    path = os.path.join(small_data, "train", "cats", sorted(os.listdir(os.path.join(small_data, "train", "cats")))[0])
    assert probe_image(path) == ("JPEG", 32, 32)


def test_layout_error_from_real_cli_without_tensorflow(model_cli, tmp_path):
    """The real process: exit 2, one stderr line, and TensorFlow never imported."""
    proc = subprocess.run(
        [
            sys.executable,
            "-X",
            "importtime",
            "-m",
            "model",
            "train",
            "--data",
            str(tmp_path / "nope"),
            "--out",
            str(tmp_path / "r"),
        ],
        cwd=model_cli.repo,
        env=model_cli.env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if not line.startswith("import time:")]
    assert len(errors) == 1 and errors[0].startswith("error: data folder"), proc.stderr
    assert "tensorflow" not in proc.stderr
