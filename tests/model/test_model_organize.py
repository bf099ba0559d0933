"""organize: Kaggle's flat folder -> class folders, deterministic and complete."""

import os

import pytest
from PIL import Image

from model.class_folders import scan_folders
from model.cli import main
from model.errors import UsageError
from model.organize import organize, plan


@pytest.fixture
def kaggle(tmp_path):
    src = tmp_path / "train"
    src.mkdir()
    for animal, n in (("cat", 12), ("dog", 10)):
        for i in range(n):
            Image.new("RGB", (20, 16), (i * 9, 0, 0)).save(src / f"{animal}.{i}.jpg")
    (src / "README.txt").write_text("not an image")
    return str(src)


def tree(root):
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, files in os.walk(root) for f in files)


def test_organize_is_complete(kaggle, tmp_path, capsys):
    dst = str(tmp_path / "data")
    assert main(["organize", "--src", kaggle, "--dst", dst, "--val-ratio", "0.25", "--seed", "1"]) == 0
    assert "organized" in capsys.readouterr().out
    files = tree(dst)
    names = sorted(os.path.basename(f) for f in files)
    assert names == sorted(n for n in os.listdir(kaggle) if n != "README.txt")  # each file exactly once
    for f in files:
        split, folder, name = f.split(os.sep)
        assert folder == name.split(".")[0] + "s"
    folders = scan_folders(dst)
    assert folders.counts() == {"train": {"cats": 9, "dogs": 7}, "validation": {"cats": 3, "dogs": 3}}


def test_organize_is_deterministic_for_a_seed(kaggle, tmp_path):
    organize(kaggle, str(tmp_path / "a"), seed=5)
    organize(kaggle, str(tmp_path / "b"), seed=5)
    organize(kaggle, str(tmp_path / "c"), seed=6)
    assert tree(tmp_path / "a") == tree(tmp_path / "b")
    assert tree(tmp_path / "a") != tree(tmp_path / "c")


def test_sample_keeps_n_per_class():
    names = [f"cat.{i}.jpg" for i in range(100)] + [f"dog.{i}.jpg" for i in range(100)]
    out = plan(names, val_ratio=0.2, sample=10, seed=0)
    assert {k: len(v) for k, v in out["train"].items()} == {"cats": 8, "dogs": 8}
    assert {k: len(v) for k, v in out["validation"].items()} == {"cats": 2, "dogs": 2}
    assert out == plan(list(reversed(names)), val_ratio=0.2, sample=10, seed=0)  # input order does not matter


def test_refuses_a_used_destination(kaggle, tmp_path, capsys):
    dst = str(tmp_path / "data")
    organize(kaggle, dst)
    assert main(["organize", "--src", kaggle, "--dst", dst]) == 2
    assert "not empty" in capsys.readouterr().err


@pytest.mark.parametrize("kwargs, match", [({"val_ratio": 1.5}, "--val-ratio"), ({"sample": 1}, "--sample")])
def test_bad_arguments(kaggle, tmp_path, kwargs, match):
    with pytest.raises(UsageError, match=match):
        organize(kaggle, str(tmp_path / "d"), **kwargs)


def test_source_without_kaggle_names(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "photo.jpg").write_bytes(b"x")
    with pytest.raises(UsageError, match="cat.<number>.jpg"):
        organize(str(tmp_path / "src"), str(tmp_path / "dst"))
