"""A pulled run's per-epoch metrics, from whatever Keras left in its results.

In this order, the first that has any:

1. ``history.json`` at the top: the built-in model's own (model/run_files.py);
2. ``history.csv`` anywhere in the results: Keras's ``CSVLogger`` (its
   ``epoch`` column is the epoch, 0-based; a resumed run that appended
   repeats an epoch: its last row wins; several files: the newest);
3. TensorBoard event files anywhere in the results: Keras's ``TensorBoard``
   callback (remote/tfevents.py, read without TensorFlow).

Each is ``{metric: [value per epoch]}`` (an epoch with no value: NaN). The
laptop only reads: nothing here imports TensorFlow or Keras.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from model import run_files

from . import tfevents

MAX_EPOCHS = 100_000  # a larger epoch number is not a real one: left out, not allocated

# Metrics where higher is better (Keras's names, without val_); every other one is lower-better (losses, errors).
HIGHER_BETTER = ("acc", "auc", "precision", "recall", "f1", "iou", "r2", "fbeta")
DEFAULT_MONITOR = "val_loss"  # what Keras's callbacks monitor unless told otherwise


def higher_is_better(metric: str) -> bool:
    return any(word in metric.lower() for word in HIGHER_BETTER)


def best(values: list[float], metric: str) -> tuple[float, int] | None:
    """The best value of one metric's list (NaNs aside) and its 1-based epoch; None if it has none."""
    found = [(v, i) for i, v in enumerate(values) if isinstance(v, (int, float)) and not math.isnan(v)]
    if not found:
        return None
    if higher_is_better(metric):
        value, i = max(found, key=lambda p: (p[0], -p[1]))
    else:
        value, i = min(found, key=lambda p: (p[0], p[1]))
    return float(value), i + 1


def _number(text: str) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


def read_csv(path: Path) -> dict[str, list[float]]:
    """A CSVLogger file as history lists, indexed by its epoch column."""
    by_epoch: dict[int, dict[str, float]] = {}
    try:
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                try:
                    epoch = int(float(row.get("epoch", "")))
                except (TypeError, ValueError):
                    continue
                if 0 <= epoch < MAX_EPOCHS:
                    by_epoch[epoch] = {k: _number(v) for k, v in row.items() if k and k != "epoch"}
    except (OSError, UnicodeDecodeError, csv.Error):
        return {}
    if not by_epoch:
        return {}
    keys = sorted({k for row in by_epoch.values() for k in row})
    last = max(by_epoch)
    return {k: [by_epoch.get(e, {}).get(k, math.nan) for e in range(last + 1)] for k in keys}


def _json_history(path: Path) -> dict[str, list[float]]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: [_number(x) for x in v] for k, v in data.items() if isinstance(v, list)}


def read(local_dir: Path) -> tuple[dict[str, list[float]], str | None]:
    """The run's history and the file (or folder of event files) it came from; ({}, None) if none."""
    local_dir = Path(local_dir)
    top = local_dir / run_files.HISTORY_JSON
    found = _json_history(top)
    if found:
        return found, str(top)
    if not local_dir.is_dir():
        return {}, None
    csvs = sorted(
        (p for p in local_dir.rglob(run_files.HISTORY_CSV) if p.is_file()),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    for path in csvs:
        found = read_csv(path)
        if found:
            return found, str(path)
    found = tfevents.epoch_history(local_dir, MAX_EPOCHS)
    if found:
        return found, f"{local_dir} (TensorBoard event files)"
    return {}, None


def epochs_done(history: dict[str, list[float]]) -> int | None:
    return max((len(v) for v in history.values()), default=None)
