"""report: every PNG, metrics, and grids that name real validation files."""

import csv
import json
import os

import numpy as np
from PIL import Image

from model.cli import main
from model.report import GRIDS, select_grids

PNGS = ("curves.png", "confusion_matrix.png", *(f"grid_{g}.png" for g in GRIDS))


def check_report(out, data):
    for name in PNGS:
        with Image.open(os.path.join(out, name)) as im:
            assert im.format == "PNG" and im.size[0] > 100, name
    with open(os.path.join(out, "grids.json")) as f:
        grids = json.load(f)
    validation = {os.path.join(root, n) for root, _, files in os.walk(os.path.join(data, "validation")) for n in files}
    assert grids["classes"] == ["cats", "dogs"]
    assert grids["correct"], "a trained model gets some right"
    assert len(grids["uncertain"]) == 9
    for name in GRIDS:
        for e in grids[name]:
            assert e["file"] in validation
            assert 0.0 <= e["probability"] <= 1.0
            assert e["label"] == os.path.basename(os.path.dirname(e["file"]))
            assert (e["label"] == e["predicted"]) == (name == "correct") or name == "uncertain"
    doubt = [abs(e["probability"] - 0.5) for e in grids["uncertain"]]
    assert doubt == sorted(doubt)
    with open(os.path.join(out, "predictions.csv")) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(validation)
    by_file = {r["file"]: float(r["p_dogs"]) for r in rows}
    for e in grids["uncertain"]:  # the grid's probability is the model's P(dogs) for that file
        assert abs(by_file[e["file"]] - e["probability"]) < 1e-5
    return grids


def test_train_wrote_the_report(cnn_run):
    check_report(cnn_run["out"], cnn_run["data"])
    with open(os.path.join(cnn_run["out"], "metrics.json")) as f:
        metrics = json.load(f)
    assert metrics["epochs_run"] == 2 and metrics["best_epoch"] in (1, 2)


def test_report_command_rewrites_it(cnn_run, capsys):
    for name in PNGS:
        os.remove(os.path.join(cnn_run["out"], name))
    assert main(["report", "--run", cnn_run["out"]]) == 0
    assert "validation accuracy" in capsys.readouterr().out
    check_report(cnn_run["out"], cnn_run["data"])


def test_report_on_a_folder_that_is_not_a_run(tmp_path, capsys):
    assert main(["report", "--run", str(tmp_path)]) == 2
    assert "no run.json" in capsys.readouterr().err


def test_select_grids_orders_like_the_course():
    # P(dog) for 6 images; labels: cat=0, dog=1
    p_dog = np.array([0.99, 0.6, 0.45, 0.02, 0.8, 0.3])
    labels = np.array([1, 1, 1, 0, 0, 0])
    probs = np.stack([1 - p_dog, p_dog], axis=1)
    grids = select_grids(probs, labels, top=3)
    assert grids["correct"] == [0, 3, 5]  # confidence 0.99, 0.98, 0.7
    assert grids["incorrect"] == [4, 2]  # a cat at P(dog)=0.8, then a dog at 0.45
    assert grids["uncertain"] == [2, 1, 5]  # |p - 0.5| = 0.05, 0.1, 0.2
