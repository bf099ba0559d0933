"""``report.html``: one self-contained page per run folder (standard library only).

Everything the run folder's report wrote, in one file a user opens instead
of six PNGs: the curves, the confusion matrix, the three grids (right, wrong,
uncertain) embedded as data: URIs, the metrics, the arguments the run was
started with, and its duration and cost when they are known. It reads only
files (run.json, metrics.json, history.json, the PNGs), so the laptop can
write it again after a pull with the cost it knows (``remote report RUN``)
without TensorFlow, numpy or matplotlib.
"""

from __future__ import annotations

import base64
import html
import json
import os

from model import run_files as rf

PAGE = rf.REPORT_PAGE
FIGURES = (
    (rf.CURVES, "Loss and accuracy per epoch"),
    (rf.CONFUSION, "Confusion matrix (validation)"),
    (rf.grid_png("correct"), "Most confident correct"),
    (rf.grid_png("incorrect"), "Most confident incorrect"),
    (rf.grid_png("uncertain"), "Most uncertain"),
)
STYLE = (
    "body{font-family:system-ui,sans-serif;margin:2em auto;max-width:70em;color:#222}"
    "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}"
    "th{background:#f4f4f4}figure{margin:1.5em 0}img{max-width:100%;border:1px solid #ddd}"
    "figcaption{font-weight:600;margin-bottom:.4em}"
)


def _read_json(path: str) -> dict:
    try:
        with open(path) as f:
            data = json.load(f)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _duration(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}h{s % 3600 // 60:02d}m{s % 60:02d}s"


def _table(rows: list[tuple[str, object]]) -> str:
    body = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>"


def _fmt(v) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def render(run_dir: str, duration_s: float | None = None, cost: float | None = None, title: str | None = None) -> str:
    """The page's HTML for ``run_dir``; figures that are missing are left out, not broken."""
    run = _read_json(os.path.join(run_dir, rf.RUN_JSON))
    metrics = _read_json(os.path.join(run_dir, rf.METRICS))
    history = _read_json(os.path.join(run_dir, rf.HISTORY_JSON))
    title = title or os.path.basename(os.path.abspath(run_dir))
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
    ]

    summary: list[tuple[str, object]] = []
    for key in ("val_accuracy", "val_loss", "best_epoch", "best_val_loss", "epochs_run", "n_validation"):
        if key in metrics:
            summary.append((key, _fmt(metrics[key])))
    if duration_s is not None:
        summary.append(("duration", _duration(duration_s)))
    if cost is not None:
        summary.append(("cost", f"${cost:.2f}"))
    if summary:
        parts.append("<h2>Result</h2>" + _table(summary))

    config = run.get("config") or {}
    if config:
        parts.append("<h2>Arguments</h2>" + _table([(k, v) for k, v in sorted(config.items()) if v is not None]))

    if history:
        epochs = max(len(v) for v in history.values())
        keys = sorted(history)
        head = "".join(f"<th>{html.escape(k)}</th>" for k in ["epoch", *keys])
        rows = "".join(
            "<tr>"
            + f"<td>{e + 1}</td>"
            + "".join(f"<td>{_fmt(history[k][e]) if e < len(history[k]) else ''}</td>" for k in keys)
            + "</tr>"
            for e in range(epochs)
        )
        parts.append(f"<h2>History</h2><table><tr>{head}</tr>{rows}</table>")

    for name, caption in FIGURES:
        path = os.path.join(run_dir, name)
        if not os.path.isfile(path):
            continue
        with open(path, "rb") as f:
            data = base64.b64encode(f.read()).decode()
        parts.append(
            f"<figure><figcaption>{html.escape(caption)}</figcaption>"
            f"<img alt='{html.escape(name)}' src='data:image/png;base64,{data}'></figure>"
        )
    parts.append("</body></html>\n")
    return "".join(parts)


def write(run_dir: str, duration_s: float | None = None, cost: float | None = None, title: str | None = None) -> str:
    """Write ``run_dir/report.html`` (atomically); its path."""
    path = os.path.join(run_dir, PAGE)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(render(run_dir, duration_s, cost, title))
    os.replace(tmp, path)
    return path
