"""The laptop's record of each run: where it lives, where its results go,
whether they are home, and how it was started (so ``--resume`` can start it
again, on its box or another one).

One JSON file per run under TRAINBOX_HOME/runs. ``provision down`` reads them
to pull what is not home yet (remote/results.py, pull_unfetched).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from common import checks, paths
from common.errors import UsageError

from .target import Target

log = logging.getLogger(__name__)


@dataclass
class RunRecord:
    run_id: str
    box: str | None
    host: str
    port: int
    user: str
    identity: str | None
    workdir: str
    local_dir: str
    created: float
    pulled: bool = False
    exit_code: int | None = None
    # How it was started (remote/orchestrate.py, RunSpec): the --data source as
    # given (a local dir made absolute; None: none), and for --resume elsewhere
    # the rest of the spec. kind: "train" (the built-in) or "run" (your code).
    data: str | None = None
    kind: str = "train"
    command: list[str] | None = None
    code: str | None = None  # the local project dir (None: the built-in model package)
    requirements: str | None = None
    out: str = "out"
    backend: str = "tensorflow"  # Keras's backend (KERAS_BACKEND) and its environment on the box
    # A multi-node run: every node (node_of), node 0 first; the fields above are node 0's.
    nodes: list[dict] | None = None
    # Records written before `remote run` existed: the model's arguments.
    train_args: list[str] | None = None
    # What the run costs (remote/runs_table.py, × its nodes): the box's price
    # per hour when it started (from its state; None: unknown, e.g. --host).
    price_per_hour: float | None = None
    # The job's state as the box last told this laptop (JobState.label), for
    # a table that does not ask the box: "stopped" after `remote stop`.
    last_seen: str | None = None
    # The link dropped inside the job's start (remote/unconfirmed.py): the same
    # command asks the box about this run before it starts another.
    start_cut: bool = False

    def target(self) -> Target:
        return Target(self.host, self.port, self.user, self.identity, self.workdir, box=self.box)

    @classmethod
    def from_dict(cls, d: dict) -> RunRecord:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def node_of(t: Target) -> dict:
    return {
        "host": t.host,
        "port": t.port,
        "user": t.user,
        "identity": t.identity,
        "workdir": t.workdir,
        "box": t.box,
        "private_address": t.private_address,
    }


def node_target(d: dict) -> Target:
    for key in ("host", "user", "workdir"):
        checks.plain(d[key], key)
    checks.port(d["port"], "port")
    if d.get("private_address") is not None:
        checks.plain(d["private_address"], "private_address")
    return Target(
        d["host"],
        d["port"],
        d["user"],
        d.get("identity"),
        d["workdir"],
        box=d.get("box"),
        private_address=d.get("private_address"),
    )


def _records_dir() -> Path:
    d = paths.home() / "runs"
    d.mkdir(parents=True, exist_ok=True)
    return d


def save_record(rec: RunRecord) -> None:
    paths.write_atomic(_records_dir() / f"{rec.run_id}.json", json.dumps(asdict(rec), indent=2))


def _read_record(f: Path) -> RunRecord:
    """The record in f, or UsageError naming f: it is read back, so it is checked like input."""
    try:
        data = json.loads(f.read_text())
        if not isinstance(data, dict):
            raise ValueError("it is not a JSON object")
        rec = RunRecord.from_dict(data)
        checks.run_id(rec.run_id)
        if rec.run_id != f.stem:
            raise ValueError(f"it is the record of {rec.run_id!r}")
        if rec.box is not None:
            checks.box_name(rec.box, "box")
        for key in ("host", "user", "workdir", "local_dir", "out"):
            checks.plain(getattr(rec, key), key)
        checks.port(rec.port, "port")
        if rec.price_per_hour is not None and (
            isinstance(rec.price_per_hour, bool)
            or not isinstance(rec.price_per_hour, (int, float))
            or not 0 <= rec.price_per_hour < float("inf")
        ):
            raise ValueError(f"price_per_hour holds {rec.price_per_hour!r}")
        if rec.last_seen is not None:
            checks.plain(rec.last_seen, "last_seen")
    except (OSError, ValueError, TypeError, UsageError) as e:
        why = e.what if isinstance(e, UsageError) else f"{type(e).__name__}: {e}"
        raise UsageError(f"the run record {f} is corrupt ({why})", "remove it, or restore it from a backup") from None
    return rec


def load_record(run_id: str) -> RunRecord | None:
    f = _records_dir() / f"{checks.run_id(run_id)}.json"
    return _read_record(f) if f.exists() else None


def records(box: str | None = None) -> list[RunRecord]:
    """Every readable record (of box); a corrupt one is skipped with a warning naming it."""
    out = []
    for f in sorted(_records_dir().glob("*.json")):
        try:
            out.append(_read_record(f))
        except UsageError as e:
            log.warning("skipped: %s", e)
    return [r for r in out if box is None or r.box == box]


def latest(box: str | None = None) -> RunRecord | None:
    recs = records(box)
    return max(recs, key=lambda r: r.created) if recs else None


def new_record(run_id: str, target: Target, local_dir: Path, **how) -> RunRecord:
    """A record of a run just started on target; ``how``: the RunRecord fields of how it was started."""
    rec = RunRecord(
        run_id,
        target.box,
        target.host,
        target.port,
        target.user,
        target.identity,
        target.workdir,
        str(local_dir.resolve()),
        time.time(),
        **how,
    )
    save_record(rec)
    return rec


def forget(run_id: str) -> None:
    """A run that never started leaves no record."""
    (_records_dir() / f"{run_id}.json").unlink(missing_ok=True)


def move_record(rec: RunRecord, target: Target) -> None:
    """The run now lives on target (resumed there)."""
    rec.box, rec.host, rec.port, rec.user = target.box, target.host, target.port, target.user
    rec.identity, rec.workdir = target.identity, target.workdir
    save_record(rec)
