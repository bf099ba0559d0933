"""A run whose start was cut: the laptop sent the job's start command (or was
about to) and never heard back, so the box may or may not have started it.

Its record is kept, marked "start unconfirmed" (its ``last_seen``), instead of
forgotten, so that `remote runs` still lists it and the same command run
again does not start it a second time unsaid. Whoever next reaches its box
settles it: the run folder's pid or exit_code says the job started (the
record then holds what the box said); neither says it never did (the record
goes, as for any run that never started).
"""

from __future__ import annotations

from collections.abc import Callable

from common.errors import UsageError

from . import job, records
from .target import Target

UNCONFIRMED = "start unconfirmed"

# What makes two starts "the same command" (RunSpec.record_fields).
_SAME = ("kind", "command", "code", "data", "out", "backend")


def mark(rec: records.RunRecord) -> None:
    rec.last_seen, rec.start_cut = UNCONFIRMED, True
    records.save_record(rec)


def is_unconfirmed(rec: records.RunRecord) -> bool:
    return rec.last_seen == UNCONFIRMED


def settle(rec: records.RunRecord, st: job.JobState | None) -> bool:
    """What the box said of an unconfirmed run, noted: False if the job never
    started (its record is forgotten), else True (the record holds its state)."""
    if st is None or (st.pid is None and st.exit_code is None):
        records.forget(rec.run_id)
        return False
    rec.last_seen, rec.exit_code = st.label, st.exit_code
    records.save_record(rec)
    return True


def ask(conn, rec: records.RunRecord, workdir: str) -> job.JobState | None:
    """Ask the box about an unconfirmed run and settle it; its state (None: it never started)."""
    st = job.job_state(conn, job.resolve_layout(conn, workdir).run(rec.run_id))
    return st if settle(rec, st) else None


def before_start(
    conn,
    target: Target,
    fields: dict,
    say: Callable[[str], None],
    confirm: Callable[[str], bool],
    flags: str = "",
) -> None:
    """Before a run starts on target: an earlier start of the same command whose
    start was cut is asked about first. Never begun: forgotten, said. Ended: said
    (once, when it settles), with where its results are. Still running (settled or
    not): another one starts only if ``confirm`` says so (--yes); else UsageError
    naming it and how to follow it."""
    for rec in records.records():
        if not rec.start_cut or (rec.host, rec.port, rec.workdir) != (target.host, target.port, target.workdir):
            continue
        if any(getattr(rec, k) != fields.get(k) for k in _SAME):
            continue
        r = rec.run_id
        if not is_unconfirmed(rec):  # settled already (`remote runs`, `status`): still running?
            st = job.job_state(conn, job.resolve_layout(conn, target.workdir).run(r))
            if st is None or not st.running:
                continue
        else:
            st = ask(conn, rec, target.workdir)
        if st is None:
            say(f"run {r}, started earlier by this same command, never began on the box (its start was cut): forgotten")
        elif not st.running:
            say(
                f"run {r}, started earlier by this same command, did start on the box (its start was cut before "
                f"this laptop heard) and is {st.label}: its results: `remote pull {r}{flags}`; starting a new run"
            )
        elif confirm(f"run {r}, started by this same command, is running on {target.label}: start another one too?"):
            say(f"run {r}, started by this same command, is running on {target.label}: starting another one (--yes)")
        else:
            raise UsageError(
                f"run {r}, started by this same command, is running on {target.label} (its start was cut before "
                "this laptop heard): nothing was started again",
                f"follow it with `remote logs {r} --follow{flags}` (results: `remote pull {r}{flags}`), "
                "or add --yes to start another one",
            )
