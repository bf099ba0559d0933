"""``remote compare RUN RUN...``: several pulled runs side by side.

It reads only what the pull brought home (the run's history as
remote/history.py finds it: history.json, else Keras's history.csv or
TensorBoard event files anywhere in runs/RUN-ID/; run.json for the arguments),
so it works offline and after ``down``. The figure needs
matplotlib, which the laptop install leaves out (the CLI must start fast):
it is imported only here, and its absence is one line naming the extra.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from common.errors import UsageError
from model import run_files

from . import history as histories

METRICS = ("loss", "accuracy")
VIEW_EXTRA = "pip install 'trainbox[view]'"


@dataclass(frozen=True)
class RunCurves:
    run_id: str
    history: dict[str, list[float]]
    config: dict = field(default_factory=dict)
    monitor: str = histories.DEFAULT_MONITOR  # the metric whose best value is the run's

    def best(self, key: str | None = None) -> tuple[float, int] | None:
        """The best value of key (default: the monitored metric; highest for accuracies, lowest for losses) and its 1-based epoch."""
        key = key or self.monitor
        return histories.best(self.history.get(key) or [], key)

    def final(self, key: str) -> float | None:
        values = self.history.get(key) or []
        return values[-1] if values else None


def _json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except ValueError as e:
        raise UsageError(f"{path} is not valid JSON ({e})", "pull the run again with `remote pull RUN`") from e
    return data if isinstance(data, dict) else {}


def load(run_id: str, local_dir: Path, monitor: str = histories.DEFAULT_MONITOR) -> RunCurves:
    _json(local_dir / run_files.HISTORY_JSON)  # a corrupt one is named, not passed over
    history, _ = histories.read(local_dir)
    if not history:
        raise UsageError(
            f"run {run_id} has no history at {local_dir} (not pulled, or it wrote none: "
            "no history.json, Keras CSVLogger's history.csv or TensorBoard event files)",
            f"bring it home with `remote pull {run_id}`",
        )
    config = _json(local_dir / run_files.RUN_JSON).get("config")
    return RunCurves(run_id, history, config if isinstance(config, dict) else {}, monitor)


def best_heading(runs) -> tuple[str, bool]:
    """The heading of the best-value column, and whether each cell names its metric (the runs monitor several)."""
    metrics = {r.monitor for r in runs}
    return (f"best {metrics.pop()}", False) if len(metrics) == 1 else ("best", True)


def differing_args(runs: list[RunCurves]) -> dict[str, list]:
    """{argument: [its value in each run]} for the arguments that differ (paths of the runs' own folders aside)."""
    keys = sorted({k for r in runs for k in r.config} - {"out"})
    return {k: [r.config.get(k) for r in runs] for k in keys if len({json.dumps(r.config.get(k)) for r in runs}) > 1}


def table(runs: list[RunCurves]) -> str:
    """Best and final metrics of each run, then the arguments that differ."""
    heading, named = best_heading(runs)
    head = (
        f"{'run':<24} {'epochs':>6} {heading:>19} {'final val_accuracy':>18} {'final val_loss':>14} {'final loss':>10}"
    )
    lines = [head]
    for r in runs:
        best = r.best()
        cells = [(f"{r.monitor}=" if named else "") + f"{best[0]:.4f} (ep {best[1]})" if best else "-"]
        cells += [
            f"{v:.4f}" if v is not None else "-"
            for v in (r.final("val_accuracy"), r.final("val_loss"), r.final("loss"))
        ]
        epochs = max((len(v) for v in r.history.values()), default=0)
        lines.append(f"{r.run_id:<24} {epochs:>6} {cells[0]:>19} {cells[1]:>18} {cells[2]:>14} {cells[3]:>10}")
    diff = differing_args(runs)
    if diff:
        lines.append("")
        lines.append("arguments that differ:")
        for k, values in diff.items():
            lines.append(f"  {k:<14} " + "  ".join(f"{r.run_id}={v}" for r, v in zip(runs, values)))
    return "\n".join(lines)


def plot(runs: list[RunCurves], path: Path) -> Path:
    """One PNG: loss and accuracy per epoch, each run one colour, validation dashed."""
    try:
        from matplotlib.figure import Figure
    except ImportError as e:
        raise UsageError("remote compare draws with matplotlib, which this install lacks", VIEW_EXTRA) from e
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    axes = fig.subplots(1, len(METRICS))
    for n, r in enumerate(runs):
        colour = f"C{n % 10}"
        for ax, metric in zip(axes, METRICS):
            for key, style in ((metric, "-o"), (f"val_{metric}", "--s")):
                values = r.history.get(key)
                if values:
                    ax.plot(
                        range(1, len(values) + 1), values, style, color=colour, markersize=3, label=f"{r.run_id} {key}"
                    )
    for ax, metric in zip(axes, METRICS):
        ax.set_title(metric)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path
