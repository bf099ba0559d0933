"""predict: a valid Kaggle submission (id,label = clipped P(dog)) in numeric id order."""

import csv
import os
import shutil

import pytest

from model.cli import main


@pytest.fixture
def kaggle_test(cnn_run, tmp_path):
    """Validation images renamed like Kaggle's test set; returns (folder, {id: is_dog})."""
    folder = tmp_path / "test1"
    folder.mkdir()
    truth = {}
    i = 0
    for animal in ("cats", "dogs"):
        src = os.path.join(cnn_run["data"], "validation", animal)
        for name in sorted(os.listdir(src))[:10]:
            i += 1
            shutil.copyfile(os.path.join(src, name), folder / f"{i}.jpg")
            truth[str(i)] = animal == "dogs"
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    return str(folder), truth


def test_predict_writes_a_submission(cnn_run, kaggle_test, tmp_path, capsys):
    folder, truth = kaggle_test
    out = str(tmp_path / "submission.csv")
    model = os.path.join(cnn_run["out"], "model.keras")
    assert main(["predict", "--model", model, "--test", folder, "--out", out, "--clip", "0.05", "0.95"]) == 0
    assert "P(dogs)" in capsys.readouterr().out
    with open(out) as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["id", "label"]
    ids = [r[0] for r in rows[1:]]
    assert ids == [str(i) for i in range(1, 21)]  # numeric order, broken.jpg skipped
    labels = {r[0]: float(r[1]) for r in rows[1:]}
    assert all(0.05 <= p <= 0.95 for p in labels.values())
    right = sum((labels[i] > 0.5) == is_dog for i, is_dog in truth.items())
    assert right >= 18


def test_predict_from_a_checkpoint_with_strict(cnn_run, kaggle_test, tmp_path, capsys):
    folder, _ = kaggle_test
    model = os.path.join(cnn_run["out"], "checkpoints", "best.keras")
    assert main(["predict", "--model", model, "--test", folder, "--out", str(tmp_path / "s.csv"), "--strict"]) == 2
    assert "broken.jpg" in capsys.readouterr().err


def test_predict_rejects_bad_clip(cnn_run, tmp_path, capsys):
    model = os.path.join(cnn_run["out"], "model.keras")
    assert main(["predict", "--model", model, "--test", str(tmp_path), "--clip", "0.9", "0.1"]) == 2
    assert "--clip" in capsys.readouterr().err
