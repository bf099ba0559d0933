"""Bringing a run's results home, safely, and remembering which runs are home.

- The box sends ``out/`` and the log as one tar stream; each entry is
  checked before anything is written: absolute paths, ``..``, links and
  devices are refused, so nothing can land outside ``runs/<run-id>/``.
- Each file is written to a temp name and renamed, so a pull cut short
  never leaves a half-written checkpoint that looks whole.
- A record per run under TRAINBOX_HOME/runs says where its results go and
  whether they are home, so ``provision down`` can pull what is not.
"""
from __future__ import annotations

import json
import os
import shlex
import tarfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Callable

from provision import paths
from provision.errors import RemoteError

from .target import Target, resolve

CHUNK = 1 << 20


# ------------------------------------------------------------ safe unpacking


class UnsafeEntry(Exception):
    pass


def safe_path(dest: Path, name: str) -> Path:
    """Where entry ``name`` may be written under dest, or UnsafeEntry."""
    p = PurePosixPath(name)
    if p.is_absolute() or ".." in p.parts:
        raise UnsafeEntry(name)
    parts = [x for x in p.parts if x not in ("", ".")]
    target = dest.joinpath(*parts) if parts else dest
    # No existing component under dest may be a symlink (it could point out).
    probe = dest
    for part in parts[:-1]:
        probe = probe / part
        if probe.is_symlink():
            raise UnsafeEntry(name)
    if target.is_symlink():
        raise UnsafeEntry(name)
    real_dest = os.path.realpath(dest)
    if os.path.commonpath([real_dest, os.path.realpath(target)]) != real_dest:
        raise UnsafeEntry(name)
    return target


def unpack(stream, dest: Path, rename: Callable[[str], str | None] = lambda n: n) -> tuple[list[str], list[str]]:
    """Unpack a tar stream into dest; return (files written, entries refused)."""
    dest.mkdir(parents=True, exist_ok=True)
    written, refused = [], []
    with tarfile.open(fileobj=stream, mode="r|", bufsize=CHUNK) as tar:
        for member in tar:
            name = rename(member.name)
            if name is None:
                continue
            try:
                target = safe_path(dest, name)
            except UnsafeEntry:
                refused.append(member.name)
                continue
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
            elif member.isfile():
                target.parent.mkdir(parents=True, exist_ok=True)
                tmp = target.with_name(f".{target.name}.part")
                src = tar.extractfile(member)
                with open(tmp, "wb") as f:
                    while chunk := src.read(CHUNK):
                        f.write(chunk)
                os.utime(tmp, (member.mtime, member.mtime))
                os.replace(tmp, target)
                written.append(name)
            else:  # symlinks, hard links, devices, fifos: never
                refused.append(member.name)
    return written, refused


def results_rename(name: str) -> str | None:
    """Map the box's run dir entries to the local layout: out/* at the top, log as train.log."""
    p = PurePosixPath(name)
    parts = [x for x in p.parts if x not in ("", ".")]
    if not parts:
        return None
    if parts[0] == "out":
        return "/".join(parts[1:]) or None
    if parts == ["log"]:
        return "train.log"
    if parts in (["exit_code"], ["run.sh"], ["events"]):
        return parts[0]
    return None


def pull(conn, remote_run_dir: str, local_dir: Path, only: str | None = None) -> list[str]:
    """Pull the run's results into local_dir; or, with ``only``, just the files
    of ``out/<only>`` that are not here yet in the same size and mtime (the
    checkpoint pulls while a run trains send each checkpoint once)."""
    from .connection import exec_channel

    d = shlex.quote(remote_run_dir)
    names = _changed(conn, remote_run_dir, local_dir / only, f"out/{only}") if only else ["out", "log", "exit_code", "run.sh", "events"]
    if not names:
        return []
    channel = exec_channel(conn, f"cd {d} && tar -c -f - --ignore-failed-read --null -T - 2>/dev/null")
    try:
        channel.sendall(b"".join(n.encode(errors="surrogateescape") + b"\0" for n in names))
        channel.shutdown_write()
        written, refused = unpack(channel.makefile("rb"), local_dir, results_rename)
        status = channel.recv_exit_status()
    finally:
        channel.close()
    if refused:
        raise RemoteError(
            f"refused {len(refused)} unsafe entries from the box ({', '.join(refused[:3])}); nothing was written outside {local_dir}",
            "inspect the run directory on the box",
        )
    if status not in (0, 2) and not written:  # tar exits 2 when a listed name is missing
        raise RemoteError(f"could not read the results on the box (tar exit {status})")
    return written


def _changed(conn, remote_run_dir: str, local: Path, remote_sub: str) -> list[str]:
    """The files under remote_sub (relative to the run dir) that local lacks or holds in another size or mtime."""
    from .connection import run
    from .sync import FIND_PRINTF, Entry, parse_listing_line

    listing = run(conn, f"cd {shlex.quote(remote_run_dir)} && find {shlex.quote(remote_sub)} -type f "
                        f"{FIND_PRINTF} 2>/dev/null; true", "listing the run's files")
    out = []
    for line in listing.splitlines():
        rel, theirs = parse_listing_line(line)
        try:
            if Entry.of((local / rel).stat()) == theirs:
                continue
        except OSError:
            pass
        out.append(f"{remote_sub}/{rel}")
    return out


# ------------------------------------------------------------ run records


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
    # How it was started, so --resume can rebuild it on another box: the
    # --data source as given (a local dir made absolute; None: synthetic)
    # and the model's arguments.
    data: str | None = None
    train_args: list[str] | None = None

    def target(self) -> Target:
        return Target(self.host, self.port, self.user, self.identity, self.workdir, box=self.box)


def _records_dir() -> Path:
    d = paths.home() / "runs"
    d.mkdir(parents=True, exist_ok=True)
    return d


def save_record(rec: RunRecord) -> None:
    paths.write_atomic(_records_dir() / f"{rec.run_id}.json", json.dumps(asdict(rec), indent=2))


def load_record(run_id: str) -> RunRecord | None:
    f = _records_dir() / f"{run_id}.json"
    return RunRecord(**json.loads(f.read_text())) if f.exists() else None


def records(box: str | None = None) -> list[RunRecord]:
    out = [RunRecord(**json.loads(f.read_text())) for f in sorted(_records_dir().glob("*.json"))]
    return [r for r in out if box is None or r.box == box]


def new_record(run_id: str, target: Target, local_dir: Path, data: str | None = None,
               train_args: list[str] | None = None) -> RunRecord:
    rec = RunRecord(run_id, target.box, target.host, target.port, target.user, target.identity, target.workdir,
                    str(local_dir.resolve()), time.time(), data=data, train_args=train_args)
    save_record(rec)
    return rec


def move_record(rec: RunRecord, target: Target) -> None:
    """The run now lives on target (resumed there)."""
    rec.box, rec.host, rec.port, rec.user = target.box, target.host, target.port, target.user
    rec.identity, rec.workdir = target.identity, target.workdir
    save_record(rec)


def pull_unfetched(box: str, say: Callable[[str], None]) -> list[str]:
    """Before a box is deleted: bring home every run of it not yet pulled."""
    from provision import state

    from . import job
    from .connection import connect

    pending = [r for r in records(box) if not r.pulled]
    if not pending:
        return []
    # The box as it is now (a restart changes its address), else where the runs were started.
    target = resolve(box) if state.load(box) is not None else pending[0].target()
    conn = connect(target, timeout=30)
    pulled = []
    try:
        for rec in pending:
            run_dir = job.Layout(target.workdir).run(rec.run_id)
            files = pull(conn, run_dir, Path(rec.local_dir))
            st = job.job_state(conn, run_dir)
            rec.pulled = True
            rec.exit_code = st.exit_code if st else None
            save_record(rec)
            say(f"pulled run {rec.run_id} ({len(files)} files) into {rec.local_dir}")
            pulled.append(rec.run_id)
    finally:
        conn.close()
    return pulled
