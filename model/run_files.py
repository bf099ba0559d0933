"""What a run folder holds: its file names, and the history and JSON I/O.

The one owner of these names. The model writes the files; the laptop reads
them once a run comes home (remote compare, remote report, the runs table),
so this module is a contract between the two halves and imports only the
standard library (tests/test_layering.py keeps it so, and lets the laptop
import it and ``model.report_page``, nothing else of model/).

::

    OUT/run.json                 settings, classes, status (running|complete)
    OUT/model.keras              the final model
    OUT/checkpoints/last.keras   saved after every epoch
    OUT/checkpoints/best.keras   saved when val_loss improves
    OUT/history.csv, .json       one row / one list entry per epoch, whole run
    OUT/tensorboard/             TensorBoard logs
    OUT/backup/                  BackupAndRestore's state while running
    OUT/metrics.json, *.png      the report (see ``model.report``)
    OUT/report.html              the report as one page (``model.report_page``)
"""

from __future__ import annotations

import csv
import json
import math
import os

RUN_JSON = "run.json"
MODEL = "model.keras"
CHECKPOINTS = "checkpoints"
LAST = os.path.join(CHECKPOINTS, "last.keras")
BEST = os.path.join(CHECKPOINTS, "best.keras")
HISTORY_CSV = "history.csv"
HISTORY_JSON = "history.json"
TENSORBOARD = "tensorboard"
BACKUP = "backup"
METRICS = "metrics.json"
CURVES = "curves.png"
CONFUSION = "confusion_matrix.png"
GRIDS = "grids.json"
PREDICTIONS = "predictions.csv"
REPORT_PAGE = "report.html"
RUNTIME_LOG = "runtime.log"  # a multi-node run that failed: the distributed runtime's messages (model/supervise.py)


def grid_png(name: str) -> str:
    """The picture of one of the report's grids (correct, incorrect, uncertain)."""
    return f"grid_{name}.png"


def read_json(path: str) -> dict | None:
    """The JSON at path, None if there is no file (a corrupt one raises ValueError)."""
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def write_json(path: str, data) -> None:
    """Write atomically: a kill never leaves half a file behind."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2)
    os.replace(tmp, path)


def read_history_csv(path: str) -> dict[int, dict[str, float]]:
    """{epoch (1-based): {metric: value}} from history.csv, {} if absent."""
    if not os.path.exists(path):
        return {}
    with open(path, newline="") as f:
        return {int(row.pop("epoch")): {k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(f)}


def history_dict(records: dict[int, dict[str, float]]) -> dict[str, list[float]]:
    """Per-epoch records -> {metric: [value per epoch]} (Keras' History shape)."""
    keys = sorted({k for r in records.values() for k in r})
    return {k: [records[e].get(k, math.nan) for e in sorted(records)] for k in keys}


def write_history(out: str, records: dict[int, dict[str, float]]) -> None:
    """history.csv and history.json of run folder out, each written atomically."""
    keys = sorted({k for r in records.values() for k in r})
    tmp = os.path.join(out, f"{HISTORY_CSV}.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["epoch", *keys])
        for e in sorted(records):
            w.writerow([e, *(records[e].get(k, "") for k in keys)])
    os.replace(tmp, os.path.join(out, HISTORY_CSV))
    write_json(os.path.join(out, HISTORY_JSON), history_dict(records))
