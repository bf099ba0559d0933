"""A run's interruptions and resumes, from the events file the box's agent writes.

box/agent.py appends one JSON line per event to the run folder's
``RUN_EVENTS`` (box/layout.py): ``spot-notice`` (AWS announced a spot stop;
the run was asked to save), ``stopping`` (the box was shutting down:
``provision stop``, the cost guard, a spot stop; asked to save), ``resumed``
(at boot: the run was cut off by an earlier boot and started again) and
``left-stopped`` (at boot: the user had stopped it, so it was not resumed).
A power loss leaves no event of its own: the ``resumed`` after it says the
run was cut. ``remote status`` reads the file on the box; ``remote runs``
reads the copy that each pull brings home.

A --recover box's instance can be replaced by its group (issue 25): the laptop
records each replacement in the box's state (``extra["replaced"]``, by
provision/recover.py) and ``replacements`` turns those of a run's time into
``replaced`` events, merged with the box's own, so that one set of lines and
one summary says both.
"""

from __future__ import annotations

import json
import shlex
import time
from dataclasses import dataclass
from pathlib import Path

from box.layout import RUN_EVENTS as EVENTS

_WORDS = {
    "spot-notice": "spot interruption notice: asked the run to save",
    "stopping": "box stopping: asked the run to save",
    "resumed": "resumed by the box at boot",
    "left-stopped": "not resumed at boot: you stopped it (`remote stop`)",
    "replaced": "instance replaced by the box's group",
    "restored": "restored from S3 on a new instance",
}
REPLACED = "replaced"


@dataclass(frozen=True)
class Event:
    kind: str
    at: float
    detail: dict

    @property
    def words(self) -> str:
        text = _WORDS.get(self.kind, self.kind)
        notice = self.detail.get("notice")
        if self.kind == "spot-notice" and isinstance(notice, dict):
            text += f" (AWS: {notice.get('action', '?')} at {notice.get('time', '?')})"
        if self.kind == "restored":
            text += f" ({self.detail.get('instance', '?')}; it ran on {self.detail.get('from_instance', '?')})"
        if self.kind == REPLACED:
            d = self.detail
            text = (
                f"instance {d.get('instance', '?')} was terminated; the group replaced it by "
                f"{d.get('by', '?')} ({d.get('type', '?')} in {d.get('zone', '?')})"
            )
        return text


def parse(text: str) -> list[Event]:
    out = []
    for line in text.splitlines():
        try:
            d = json.loads(line)
            out.append(Event(str(d.pop("event")), float(d.pop("at")), d))
        except (ValueError, KeyError, TypeError, AttributeError):
            continue  # a line cut by a power loss
    return out


def read_local(run_dir: Path) -> list[Event]:
    f = Path(run_dir) / EVENTS
    return parse(f.read_text(errors="replace")) if f.exists() else []


def replacements(box: str | None, since: float, until: float | None = None) -> list[Event]:
    """The box's instance replacements (its state's ``extra["replaced"]``) between since and until,
    as events; none for a box that is not a --recover box, or whose state is gone."""
    from common import state

    if not box:
        return []
    try:
        known = state.load(box)
    except state.CorruptState:
        return []
    out = []
    for r in ((known.extra or {}).get("replaced") or []) if known is not None else []:
        try:
            at = float(r["at"])
        except (KeyError, TypeError, ValueError):
            continue
        # EC2 gives a launch time to the second: one launched in the run's first second is the run's.
        if at >= since - 1.0 and (until is None or at <= until):
            out.append(Event(REPLACED, at, {k: v for k, v in r.items() if k != "at"}))
    return out


def merged(*sets: list[Event]) -> list[Event]:
    """Several sets of events as one, in time order."""
    return sorted((e for events in sets for e in events), key=lambda e: e.at)


def read_command(run_dir: str) -> str:
    return f"cat {shlex.quote(run_dir)}/{EVENTS} 2>/dev/null; true"


def stamp(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def lines(events: list[Event]) -> list[str]:
    """One line per event, with its time, for `remote status`."""
    return [f"{stamp(e.at)}  {e.words}" for e in events]


def interruptions(events: list[Event]) -> int:
    """How many times the run was cut off: each resume follows one; a notice or stop not
    yet followed by a resume is one more."""
    n = sum(1 for e in events if e.kind == "resumed")
    if events and events[-1].kind in ("spot-notice", "stopping", REPLACED):
        n += 1
    return n


def summary(events: list[Event]) -> str:
    """A short cell for `remote runs`: "-", or "2, resumed 12:04:10"."""
    n = interruptions(events)
    if not n:
        return "-"
    resumes = [e for e in events if e.kind == "resumed"]
    last = f", resumed {time.strftime('%H:%M:%S', time.localtime(resumes[-1].at))}" if resumes else ""
    if events[-1].kind != "resumed":
        last += ", cut"
    replaced = [e for e in events if e.kind == REPLACED]
    if replaced:
        d, when = replaced[-1].detail, time.strftime("%H:%M:%S", time.localtime(replaced[-1].at))
        last += f", replaced {len(replaced)}x (last {when}: {d.get('type', '?')} in {d.get('zone', '?')})"
    return f"{n}{last}"
