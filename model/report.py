"""The course's report for one run folder, written at the end of ``train``.

::

    OUT/curves.png              loss and accuracy per epoch, train vs validation
    OUT/confusion_matrix.png    on the validation set, with counts
    OUT/grid_correct.png        most confident correct predictions
    OUT/grid_incorrect.png      most confident incorrect predictions
    OUT/grid_uncertain.png      probability nearest 0.5 (the model's doubts)
    OUT/grids.json              the files (real validation paths) in each grid
    OUT/predictions.csv         every validation file with its probabilities
    OUT/metrics.json            accuracy, loss, confusion matrix, best epoch...
    OUT/report.html             all of the above in one self-contained page (model/report_page.py)

Each grid image is titled with its file name, true class and probability.
With two classes the probability shown is that of the second class (dogs,
as in the course's sigmoid output); with more, that of the predicted class.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Callable

import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from model import report_page
from model import run_files as rf
from model.class_folders import ClassFolders, scan_folders
from model.errors import UsageError

GRIDS = ("correct", "incorrect", "uncertain")


def plot_curves(history: dict[str, list[float]], path: str) -> None:
    fig = Figure(figsize=(10, 4), layout="constrained")
    for ax, metric in zip(fig.subplots(1, 2), ("loss", "accuracy")):
        for key, style in ((metric, "-o"), (f"val_{metric}", "-s")):
            if key in history:
                ax.plot(range(1, len(history[key]) + 1), history[key], style, label=key)
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.savefig(path, dpi=100)


def confusion_matrix(labels: np.ndarray, preds: np.ndarray, n: int) -> np.ndarray:
    """Rows: true class, columns: predicted class."""
    cm = np.zeros((n, n), dtype=int)
    np.add.at(cm, (labels, preds), 1)
    return cm


def plot_confusion(cm: np.ndarray, classes: list[str], path: str) -> None:
    fig = Figure(figsize=(4 + len(classes) * 0.5, 3.5 + len(classes) * 0.5), layout="constrained")
    ax = fig.subplots()
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(len(classes)), classes)
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            color = "white" if cm[i, j] > cm.max() / 2 else "black"
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", color=color)
    ax.set_title(f"validation accuracy {np.trace(cm) / max(cm.sum(), 1):.3f}")
    fig.savefig(path, dpi=100)


def select_grids(probs: np.ndarray, labels: np.ndarray, top: int = 9) -> dict[str, list[int]]:
    """Indices for the course's three grids, most telling first.

    - correct: right, ordered by confidence (highest first)
    - incorrect: wrong, ordered by confidence (the most confidently wrong first)
    - uncertain: all, ordered by closeness to a coin flip (binary: |p - 0.5|)
    """
    # Ordered by the probabilities as reported (rounded to 6 places), so the
    # grids and grids.json agree even where two values differ only beyond that.
    probs = np.round(probs, 6)
    preds = probs.argmax(axis=1)
    confidence = probs.max(axis=1)
    if probs.shape[1] == 2:
        doubt = np.abs(probs[:, 1] - 0.5)
    else:
        doubt = confidence
    right = np.flatnonzero(preds == labels)
    wrong = np.flatnonzero(preds != labels)
    # Stable sorts, so ties keep file order and the report is reproducible.
    return {
        "correct": right[np.argsort(-confidence[right], kind="stable")][:top].tolist(),
        "incorrect": wrong[np.argsort(-confidence[wrong], kind="stable")][:top].tolist(),
        "uncertain": np.argsort(doubt, kind="stable")[:top].tolist(),
    }


def plot_grid(entries: list[dict], title: str, path: str, thumb: int = 128) -> None:
    """A grid of images, each titled with its name, class and probability."""
    cols = 3
    rows = max(1, math.ceil(len(entries) / cols))
    fig = Figure(figsize=(cols * 2.6, rows * 2.9 + 0.4), layout="constrained")
    fig.suptitle(title)
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for ax in axes:
        ax.axis("off")
    if not entries:
        axes[0].text(0.5, 0.5, "none", ha="center", va="center", fontsize=14)
    for ax, e in zip(axes, entries):
        with Image.open(e["file"]) as im:
            im = im.convert("RGB")
            im.thumbnail((thumb, thumb))
            ax.imshow(np.asarray(im))
        ax.set_title(
            f"{os.path.basename(e['file'])}\n{e['label']}  {e['prob_name']}={e['probability']:.3g}",
            fontsize=8,
        )
    fig.savefig(path, dpi=90)


def _load_model(run_dir: str):
    import keras

    import model.nets  # noqa: F401  registers VGG16Preprocess for loading

    for name in (rf.MODEL, rf.LAST):
        path = os.path.join(run_dir, name)
        if os.path.exists(path):
            return keras.saving.load_model(path)
    raise UsageError(f"{run_dir} has no model.keras or checkpoints/last.keras; train first (python -m model train)")


def predict_files(model, files, image_size: int, batch_size: int) -> np.ndarray:
    """Class probabilities for ``files`` in order (no file may be skipped)."""
    from model.pipeline import make_dataset

    ds = make_dataset(files, image_size, batch_size, training=False, cache=False, skip_errors=False)
    probs = np.asarray(model.predict(ds, verbose=0), dtype=np.float64)
    if len(probs) != len(files):
        raise RuntimeError(f"got {len(probs)} predictions for {len(files)} files")
    return probs


def write_report(
    run_dir: str,
    model=None,
    folders: ClassFolders | None = None,
    data: str | None = None,
    log: Callable[[str], None] = print,
    top: int = 9,
) -> dict:
    """Write every report file into ``run_dir`` and return the metrics.

    ``model`` defaults to ``run_dir/model.keras``; ``data`` to the data
    folder recorded in ``run.json`` (pass it when the run moved machines).
    """
    try:
        with open(os.path.join(run_dir, rf.RUN_JSON)) as f:
            run = json.load(f)
    except FileNotFoundError:
        raise UsageError(f"{run_dir} is not a run folder (no run.json); give the --out of a train command") from None
    cfg = run["config"]
    classes = run["classes"]
    history_path = os.path.join(run_dir, rf.HISTORY_JSON)
    history = {}
    if os.path.exists(history_path):
        with open(history_path) as f:
            history = json.load(f)
    plot_curves(history, os.path.join(run_dir, rf.CURVES))

    if folders is None:
        folders = scan_folders(data or run["data"])
    if folders.classes != classes:
        raise UsageError(
            f"{folders.root} has classes {folders.classes}, the run was trained on {classes}; pass the right --data"
        )
    if model is None:
        model = _load_model(run_dir)
    files = folders.validation
    probs = predict_files(model, files, cfg["image_size"], cfg["batch_size"])
    labels = np.array([f.label for f in files])
    preds = probs.argmax(axis=1)
    cm = confusion_matrix(labels, preds, len(classes))
    plot_confusion(cm, classes, os.path.join(run_dir, rf.CONFUSION))

    binary = len(classes) == 2

    def entry(i: int) -> dict:
        p = probs[i, 1] if binary else probs[i, preds[i]]
        return {
            "file": files[i].path,
            "label": classes[labels[i]],
            "predicted": classes[preds[i]],
            "probability": round(float(p), 6),
            "prob_name": f"P({classes[1]})" if binary else "P(predicted)",
        }

    grids = {name: [entry(i) for i in idx] for name, idx in select_grids(probs, labels, top).items()}
    titles = {
        "correct": "most confident correct",
        "incorrect": "most confident incorrect",
        "uncertain": "most uncertain (nearest 0.5)" if binary else "most uncertain",
    }
    for name in GRIDS:
        plot_grid(grids[name], titles[name], os.path.join(run_dir, rf.grid_png(name)))
    with open(os.path.join(run_dir, rf.GRIDS), "w") as f:
        json.dump({"classes": classes, **grids}, f, indent=2)

    with open(os.path.join(run_dir, rf.PREDICTIONS), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "label", "predicted", *(f"p_{c}" for c in classes)])
        for i, fi in enumerate(files):
            w.writerow([fi.path, classes[labels[i]], classes[preds[i]], *(f"{p:.6f}" for p in probs[i])])

    p_true = np.clip(probs[np.arange(len(labels)), labels], 1e-7, 1.0)
    metrics = {
        "classes": classes,
        "n_validation": len(files),
        "val_accuracy": float((preds == labels).mean()),
        "val_loss": float(-np.log(p_true).mean()),
        "confusion_matrix": cm.tolist(),
        "epochs_run": len(history.get("loss", [])),
        "skipped_files": len(run.get("skipped", [])),
    }
    if history.get("val_loss"):
        best = int(np.nanargmin(history["val_loss"]))
        metrics.update(best_epoch=best + 1, best_val_loss=history["val_loss"][best])
        metrics["last_epoch"] = {k: v[-1] for k, v in history.items()}
    with open(os.path.join(run_dir, rf.METRICS), "w") as f:
        json.dump(metrics, f, indent=2)
    report_page.write(run_dir)
    log(
        f"report: validation accuracy {metrics['val_accuracy']:.4f} on {len(files)} images, "
        f"{len(grids['incorrect'])} shown wrong; plots in {run_dir}"
    )
    return metrics
