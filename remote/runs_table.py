"""``remote runs``: one row per run started from this laptop, with what it did and cost.

Offline on purpose (it works after ``down``, and never waits on a box): each
row is built from the run's record (remote/records.py) and the files the pull
brought home into runs/RUN-ID/ (run.json, exit_code, resumed, run.sh,
train.log, and the history as remote/history.py finds it: history.json, else
Keras's history.csv or TensorBoard event files anywhere in the results). A run
whose results are not home shows what the box last told this laptop;
``remote status RUN`` asks the box again.

- epochs: done (the history's epochs) / asked (run.json's, else --epochs in
  the command).
- best: the best value of the monitored metric and its epoch (``--monitor``;
  default: val_accuracy for `remote train`'s model, val_loss for your own
  code, as Keras's callbacks monitor; accuracies are best highest, losses
  lowest).

- duration: the job's wall time, from its start (run.sh's time on the box,
  kept by the pull; else when the laptop recorded it) to its end (exit_code's
  time; the log's last write for a stopped or interrupted run; now while it
  runs).
- cost: that duration × the box's price per hour (recorded when the run
  started, from the box's state; ``--price`` for a box whose price is not
  known, e.g. ``--host``) × its nodes. It is the run's share: the box bills
  for every hour it is up, runs or not (``python -m provision state``).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from box import layout as names
from model import run_files  # the run folder's names: the one part of model/ the laptop reads

from . import history, interruptions
from .records import RunRecord
from .results import LOCAL_LOG

FIELDS = (
    "run",
    "box",
    "net",
    "backend",
    "epochs_done",
    "epochs_asked",
    "monitor",
    "best",
    "best_val_accuracy",
    "best_epoch",
    "duration_s",
    "price_per_hour",
    "nodes",
    "cost",
    "state",
    "exit_code",
    "resumed",
    "interrupted",
    "home",
    "local_dir",
)
DEFAULT_BACKEND = "tensorflow"


@dataclass(frozen=True)
class RunRow:
    run: str
    box: str
    net: str | None
    backend: str
    epochs_done: int | None
    epochs_asked: int | None
    monitor: str  # the metric whose best value ``best`` is (at epoch ``best_epoch``)
    best: float | None
    best_val_accuracy: float | None
    best_epoch: int | None
    duration_s: float | None
    price_per_hour: float | None
    nodes: int
    cost: float | None
    state: str  # running, finished, failed, stopped, interrupted
    exit_code: int | None
    resumed: int  # times it was started again (after a stop, a kill or an interruption)
    interrupted: (
        str  # the box's own interruptions as of the last pull (remote/interruptions.py): "-" or "1, resumed 12:04:10"
    )
    home: bool
    local_dir: str

    def as_dict(self) -> dict:
        return asdict(self)


def _json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _int_file(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def _epochs_flag(argv: list[str] | None) -> int | None:
    """``--epochs N`` (or ``--epochs=N``) in a recorded command line."""
    argv = list(argv or [])
    for i, a in enumerate(argv):
        m = re.fullmatch(r"--epochs=(\d+)", a)
        if m:
            return int(m.group(1))
        if a == "--epochs" and i + 1 < len(argv) and argv[i + 1].isdigit():
            return int(argv[i + 1])
    return None


def _state(rec: RunRecord, exit_code: int | None) -> str:
    if exit_code is not None:
        return "finished" if exit_code == 0 else "failed"
    seen = rec.last_seen or ""
    if seen in ("stopped", "start unconfirmed"):  # the latter: remote/unconfirmed.py
        return seen
    if seen in ("died", "not started") or rec.pulled:
        return "interrupted"  # it ended without an exit code: killed, or its box went away
    return "running"


def monitored(rec: RunRecord) -> str:
    """The metric a run's best value is of, unless ``--monitor`` says: the built-in model's val_accuracy, else Keras's val_loss."""
    return "val_accuracy" if rec.kind == "train" else history.DEFAULT_MONITOR


def row(
    rec: RunRecord, price_per_hour: float | None = None, now: float | None = None, monitor: str | None = None
) -> RunRow:
    """The row of one run; price_per_hour (if given) overrides the recorded one, monitor the monitored metric."""
    local = Path(rec.local_dir)
    run_info = _json(local / run_files.RUN_JSON)
    got = run_info.get("config")
    config: dict = got if isinstance(got, dict) else {}
    hist, _ = history.read(local)
    metric = monitor or monitored(rec)
    exit_code = _int_file(local / names.RUN_EXIT_CODE)
    if exit_code is None:
        exit_code = rec.exit_code
    state = _state(rec, exit_code)

    done = history.epochs_done(hist)
    asked = (
        config.get("epochs") if isinstance(config.get("epochs"), int) else _epochs_flag(rec.command or rec.train_args)
    )
    best = history.best(hist.get(metric) or [], metric)
    best_accuracy = history.best(hist.get("val_accuracy") or [], "val_accuracy")
    net = config.get("net") if isinstance(config.get("net"), str) else ("cnn" if rec.kind == "train" else None)
    backend = run_info.get("backend") or config.get("backend") or rec.backend or DEFAULT_BACKEND
    nodes = len(rec.nodes) if rec.nodes else 1

    start = _mtime(local / names.RUN_SCRIPT) or rec.created
    end: float | None
    if state == "running":
        end = time.time() if now is None else now
    elif state in ("finished", "failed"):
        end = _mtime(local / names.RUN_EXIT_CODE) or _mtime(local / LOCAL_LOG)
    else:
        end = _mtime(local / LOCAL_LOG)
    duration = max(0.0, end - start) if end is not None else None
    price = price_per_hour if price_per_hour is not None else rec.price_per_hour
    cost = price * duration / 3600.0 * nodes if price is not None and duration is not None else None
    return RunRow(
        run=rec.run_id,
        box=rec.box or f"{rec.user}@{rec.host}:{rec.port}",
        net=net,
        backend=str(backend),
        epochs_done=done,
        epochs_asked=asked,
        monitor=metric,
        best=best[0] if best else None,
        best_val_accuracy=best_accuracy[0] if best_accuracy else None,
        best_epoch=best[1] if best else None,
        duration_s=round(duration, 1) if duration is not None else None,
        price_per_hour=price,
        nodes=nodes,
        cost=round(cost, 4) if cost is not None else None,
        state=state,
        exit_code=exit_code,
        resumed=_int_file(local / names.RUN_RESUMED) or 0,
        interrupted=interruptions.summary(
            interruptions.merged(
                interruptions.read_local(local),
                interruptions.replacements(rec.box, rec.created, end if state in ("finished", "failed") else None),
            )
        ),
        home=rec.pulled,
        local_dir=rec.local_dir,
    )


def box_price(rec: RunRecord) -> float | None:
    """The price recorded with the run, else its box's (a record from before prices were recorded, if the box is still there)."""
    if rec.price_per_hour is not None or rec.box is None:
        return rec.price_per_hour
    from common import state

    try:
        box = state.load(rec.box)
    except state.CorruptState:
        return None
    return box.price_per_hour if box is not None else None


def rows(recs: list[RunRecord], price_per_hour: float | None = None, monitor: str | None = None) -> list[RunRow]:
    """The rows, oldest first; price_per_hour (``--price``) overrides every run's, monitor (``--monitor``) its metric."""
    now = time.time()
    return [
        row(r, price_per_hour if price_per_hour is not None else box_price(r), now, monitor)
        for r in sorted(recs, key=lambda r: r.created)
    ]


def duration_text(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(round(seconds))
    return f"{s // 3600}h{s % 3600 // 60:02d}m{s % 60:02d}s" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def table(found: list[RunRow]) -> str:
    """The rows as a table for a terminal (``--json`` has the same fields, unformatted)."""
    metrics = {r.monitor for r in found}
    named = len(metrics) > 1  # several metrics: each cell names its own
    head = (
        "run",
        "box",
        "net",
        "epochs",
        "best" if named else f"best {next(iter(metrics), history.DEFAULT_MONITOR)}",
        "duration",
        "cost",
        "state",
        "home",
    )
    lines = [head]
    for r in found:
        net = f"{r.net or '-'}/{r.backend}"
        epochs = (
            f"{'-' if r.epochs_done is None else r.epochs_done}/{'-' if r.epochs_asked is None else r.epochs_asked}"
        )
        best = (f"{r.monitor}=" if named else "") + f"{r.best:.4f}@{r.best_epoch}" if r.best is not None else "-"
        cost = f"${r.cost:.2f}" if r.cost is not None else "-"
        state = (
            r.state
            + (f" (exit {r.exit_code})" if r.state == "failed" else "")
            + (f", resumed {r.resumed}x" if r.resumed else "")
        )
        if r.interrupted != "-":  # by the box itself: a spot stop, a stopped box, a power loss
            state += f"; box interrupted {r.interrupted}"
        lines.append(
            (r.run, r.box, net, epochs, best, duration_text(r.duration_s), cost, state, "yes" if r.home else "no")
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines)
