"""``remote report RUN``: write runs/RUN-ID/report.html again on the laptop.

The box writes the page at the end of every run (model/report.py), knowing
neither the run's duration nor what it cost; here the pulled run's page is
rendered again, offline, by the same renderer (model/report_page.py, one of
model's stdlib-only contract modules) with the duration and cost of
``remote runs`` (remote/runs_table.py).
"""

from __future__ import annotations

from pathlib import Path

from common.errors import UsageError
from model import report_page, run_files  # model's contract modules: the standard library only

from . import runs_table
from .records import RunRecord


def write(rec: RunRecord, price_per_hour: float | None = None) -> Path:
    """Render the pulled run's report.html with its duration and cost; its path."""
    local = Path(rec.local_dir)
    if not any((local / name).is_file() for name in (run_files.RUN_JSON, run_files.HISTORY_JSON, run_files.METRICS)):
        raise UsageError(
            f"run {rec.run_id} has nothing to report at {local} (no {run_files.RUN_JSON}, "
            f"{run_files.HISTORY_JSON} or {run_files.METRICS}: not pulled, or not a `remote train` run)",
            f"bring it home with `remote pull {rec.run_id}`",
        )
    price = price_per_hour if price_per_hour is not None else runs_table.box_price(rec)
    row = runs_table.row(rec, price)
    return Path(report_page.write(str(local), row.duration_s, row.cost, title=f"run {rec.run_id}"))


def refresh(rec: RunRecord) -> Path | None:
    """After a pull: the box's page written again with the duration and cost, if the run wrote one."""
    if not (Path(rec.local_dir) / run_files.REPORT_PAGE).is_file():
        return None
    return write(rec)
