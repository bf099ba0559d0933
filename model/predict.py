"""Kaggle submission: ``id,label`` where label is the probability of "dog".

Kaggle's test folder is flat (``1.jpg`` ... ``12500.jpg``); the id is the
file name without extension, rows are in numeric id order. Probabilities
are clipped (default 0.02..0.98) because the competition scores log loss,
where one confident mistake costs more than many cautious right answers.
"""

from __future__ import annotations

import csv
import logging
import os
from dataclasses import dataclass

import numpy as np

from model import run_files
from model.class_folders import readable_images
from model.errors import UsageError

log = logging.getLogger(__name__)


@dataclass
class Submission:
    path: str
    rows: int
    positive_class: str
    skipped: list[tuple[str, str]]


def run_classes(model_path: str) -> list[str] | None:
    """Class names from the run.json beside the model (OUT/ or OUT/checkpoints/)."""
    here = os.path.dirname(os.path.abspath(model_path))
    for folder in (here, os.path.dirname(here)):
        run = run_files.read_json(os.path.join(folder, run_files.RUN_JSON))
        if run is not None:
            return run.get("classes")
    return None


def _sort_key(path: str):
    stem = os.path.splitext(os.path.basename(path))[0]
    return (0, int(stem), "") if stem.isdigit() else (1, 0, stem)


def predict(
    model_path: str,
    test_dir: str,
    out_csv: str,
    clip: tuple[float, float] = (0.02, 0.98),
    batch_size: int = 64,
    strict: bool = False,
) -> Submission:
    """Write ``out_csv`` for every readable image in ``test_dir``.

    The positive class is "dogs" when the run's classes include it, else
    the second class. Unreadable files are skipped with a warning (refused
    with ``strict``). Raises UsageError (exit 2) for bad arguments.
    """
    lo, hi = clip
    if not 0.0 <= lo < hi <= 1.0:
        raise UsageError(f"--clip {lo} {hi}: need 0 <= low < high <= 1, e.g. --clip 0.02 0.98")
    if not os.path.isfile(model_path):
        raise UsageError(f"--model {model_path}: no such file; give a run's model.keras or a checkpoint")
    if not os.path.isdir(test_dir):
        raise UsageError(f"--test {test_dir} is not a folder; point it at Kaggle's unzipped test folder")
    files, skipped = readable_images(test_dir, 0)
    if skipped and strict:
        raise UsageError(f"{skipped[0][0]}: {skipped[0][1]}; remove it, or drop --strict to skip it")
    if skipped:
        log.warning("skipped %d unreadable file(s) in %s, e.g. %s: %s", len(skipped), test_dir, *skipped[0])
    if not files:
        raise UsageError(
            f"{test_dir} holds no readable image; point --test at Kaggle's test folder (1.jpg, 2.jpg, ...)"
        )
    files.sort(key=lambda f: _sort_key(f.path))

    import keras

    import model.nets  # noqa: F401  registers VGG16Preprocess for loading
    from model.report import predict_files

    net = keras.saving.load_model(model_path)
    image_size = int(net.input_shape[1])
    classes = run_classes(model_path) or [str(i) for i in range(int(net.output_shape[-1]))]
    positive = classes.index("dogs") if "dogs" in classes else 1
    probs = predict_files(net, files, image_size, batch_size)[:, positive]
    labels = np.clip(probs, lo, hi)
    os.makedirs(os.path.dirname(os.path.abspath(out_csv)), exist_ok=True)
    with open(out_csv, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "label"])
        for fi, p in zip(files, labels):
            w.writerow([os.path.splitext(os.path.basename(fi.path))[0], f"{p:.6f}"])
    return Submission(out_csv, len(files), classes[positive], skipped)
