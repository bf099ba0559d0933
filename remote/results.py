"""Bringing a run's results home, safely.

- The box sends ``out/`` and the log as one tar stream; each entry is
  checked before anything is written: absolute paths, ``..``, links and
  devices are refused, so nothing can land outside ``runs/<run-id>/``.
- Each file is written to a temp name and renamed, so a pull cut short
  never leaves a half-written checkpoint that looks whole.
- A full pull mirrors the box's deletions among the files trainbox itself
  pulled before (its record of them: ``.trainbox-pulled`` in the run's local
  folder): Keras's BackupAndRestore removes ``backup/`` when a run ends, so
  a mid-run pull's copy of it must not linger at home. A file the user made
  or changed here is never deleted.
- ``pull_unfetched``: before a box is deleted, every run of it whose
  record (remote/records.py) says its results are not home is pulled; a
  --recover box's runs that no instance has (or all, when none answers)
  come from S3 (remote/store_pull.py).
"""

from __future__ import annotations

import os
import shlex
import tarfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from box import layout as names
from box.layout import BoxLayout
from common.errors import RemoteError, TrainboxError, name_flag

from .records import records, save_record
from .target import resolve

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
                assert src is not None  # a regular file's member always has its bytes
                try:
                    with open(tmp, "wb") as f:
                        while chunk := src.read(CHUNK):
                            f.write(chunk)
                    os.utime(tmp, (member.mtime, member.mtime))
                    os.replace(tmp, target)
                except BaseException:  # a cut link, a full disk, Ctrl-C: no partial file is left
                    tmp.unlink(missing_ok=True)
                    raise
                written.append(name)
            else:  # symlinks, hard links, devices, fifos: never
                refused.append(member.name)
    return written, refused


# The run dir's own files that come home beside out/ (the agent's events: its interruptions).
RUN_FILES = ("log", "exit_code", "run.sh", "resumed", names.RUN_EVENTS)
LOCAL_LOG = "train.log"  # the run's log, as it lies at home
# The run's local folder's record of what pulls wrote there: {path: [size, mtime]}.
PULLED = ".trainbox-pulled"


def results_rename(name: str, out: str = "out") -> str | None:
    """Map the box's run dir entries to the local layout: <out>/* at the top,
    log as train.log, the job's own files as they are."""
    p = PurePosixPath(name)
    parts = [x for x in p.parts if x not in ("", ".")]
    if not parts:
        return None
    n = len(PurePosixPath(out).parts)
    if list(PurePosixPath(out).parts) == parts[:n]:
        mapped = "/".join(parts[n:])
        return mapped if mapped and mapped != PULLED else None
    if parts == ["log"]:
        return LOCAL_LOG
    if len(parts) == 1 and parts[0] in RUN_FILES:
        return parts[0]
    return None


def pull(conn, remote_run_dir: str, local_dir: Path, only: str | None = None, out: str = "out") -> list[str]:
    """Pull the run's results (its ``out`` dir, relative to the run dir, and
    the job's files) into local_dir; or, with ``only``, just the files of
    ``<out>/<only>`` that are not here yet in the same size and mtime (the
    checkpoint pulls while a run trains send each checkpoint once)."""
    from .connection import during

    run_id = PurePosixPath(remote_run_dir).name
    with during(conn, f"the pull of run {run_id}", f"run `remote pull {run_id}` again: what is home is whole"):
        return _pull(conn, remote_run_dir, local_dir, only, out)


def _pull(conn, remote_run_dir: str, local_dir: Path, only: str | None, out: str) -> list[str]:
    from .connection import exec_channel

    d = shlex.quote(remote_run_dir)
    names = _changed(conn, remote_run_dir, local_dir / only, f"{out}/{only}") if only else [out, *RUN_FILES]
    if not names:
        return []
    channel = exec_channel(conn, f"cd {d} && tar -c -f - --ignore-failed-read --null -T - 2>/dev/null")
    try:
        channel.sendall(b"".join(n.encode(errors="surrogateescape") + b"\0" for n in names))
        channel.shutdown_write()
        try:
            written, refused = unpack(channel.makefile("rb"), local_dir, lambda n: results_rename(n, out))
        except tarfile.TarError as e:  # no partial file was kept (unpack)
            raise RemoteError(f"the results from the box ended in the middle ({e})") from e
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
    pulled = _read_pulled(local_dir)
    for rel in written:
        try:
            pulled[rel] = list(_entry(local_dir / rel))
        except OSError:
            pass
    if not only:
        on_box = _on_box(conn, remote_run_dir, out)
        if on_box is not None:
            _mirror_deletions(local_dir, pulled, on_box | set(written))
    _write_pulled(local_dir, pulled)
    return written


def _entry(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_size, int(st.st_mtime)


def _read_pulled(local_dir: Path) -> dict[str, list[int]]:
    import json

    try:
        data = json.loads((local_dir / PULLED).read_text())
    except (OSError, ValueError):
        return {}
    return (
        {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, list)} if isinstance(data, dict) else {}
    )


def _write_pulled(local_dir: Path, pulled: dict[str, list[int]]) -> None:
    import json

    from common.paths import write_atomic

    write_atomic(local_dir / PULLED, json.dumps(pulled, sort_keys=True) + "\n")


def _on_box(conn, remote_run_dir: str, out: str) -> set[str] | None:
    """The run's files on the box now, as named at home; None when the box has no ``out`` (nothing to mirror)."""
    from .connection import run

    d, o = shlex.quote(remote_run_dir), shlex.quote(out)
    listing = run(
        conn,
        f"cd {d} 2>/dev/null && [ -d {o} ] && {{ find {o} -type f -print0; "
        f'for f in {" ".join(RUN_FILES)}; do [ -f "$f" ] && printf \'%s\\0\' "$f"; done; }}; '
        "echo; echo end",
        "listing the run's files",
    )
    body, _, tail = listing.rstrip("\n").rpartition("\n")
    if tail != "end" or not body:
        return None
    return {m for m in (results_rename(n, out) for n in body.split("\0") if n) if m}


def _mirror_deletions(local_dir: Path, pulled: dict[str, list[int]], on_box: set[str]) -> None:
    """Delete here what an earlier pull wrote and the box no longer has, if it
    is still as pulled (size and mtime); then the folders that left empty."""
    for rel in sorted(set(pulled) - on_box):
        path = local_dir / rel
        try:
            safe = safe_path(local_dir, rel)
        except UnsafeEntry:
            pulled.pop(rel)
            continue
        try:
            if list(_entry(safe)) == pulled[rel]:
                safe.unlink()
        except OSError:
            pass
        pulled.pop(rel)
        parent = path.parent
        while parent != local_dir and parent.is_relative_to(local_dir):
            try:
                parent.rmdir()  # only when empty
            except OSError:
                break
            parent = parent.parent


def _changed(conn, remote_run_dir: str, local: Path, remote_sub: str) -> list[str]:
    """The files under remote_sub (relative to the run dir) that local lacks or holds in another size or mtime."""
    from .connection import run
    from .sync import FIND_PRINTF, Entry, parse_listing

    listing = run(
        conn,
        f"cd {shlex.quote(remote_run_dir)} && find {shlex.quote(remote_sub)} -type f {FIND_PRINTF} 2>/dev/null; true",
        "listing the run's files",
    )
    out = []
    for rel, theirs in parse_listing(listing):
        try:
            if Entry.of((local / rel).stat()) == theirs:
                continue
        except OSError:
            pass
        out.append(f"{remote_sub}/{rel}")
    return out


# ------------------------------------------------------------ before a box goes


def pull_unfetched(
    box: str,
    say: Callable[[str], None],
    from_store: Callable[[list[str]], list[str]] | None = None,
    warn: bool = True,
) -> dict[str, str]:
    """Before a box is deleted: bring home every run of it not yet pulled.

    Returns the runs left on the box, each with why. A run that cannot be pulled (the box is
    unreachable, its results hold an unsafe entry) never stops the others nor
    the caller; with ``warn`` each is named, with how to get it, in a warning
    (without: the caller says it). A dropped link ends the pulls: the rest are left too.
    from_store: a --recover box's S3 pull (remote/store_pull.py), for the runs no instance
    has (all of them when none answers); it returns those still not home."""
    from common import state

    from . import job
    from .connection import LinkDropped, connect

    pending = [r for r in records(box) if not r.pulled]
    if not pending:
        return {}
    flag = name_flag(box)

    def stored(ids: list[str]) -> dict[str, str]:
        assert from_store is not None
        return {rid: "not from S3 either: see above" for rid in from_store(ids)}

    try:
        # The box as it is now (a restart changes its address), else where the runs were started.
        target = resolve(box) if state.load(box) is not None else pending[0].target()
        conn = connect(target, timeout=30)
    except TrainboxError as e:
        if from_store is not None:  # a --recover box: its runs are in S3 too
            say(f"box '{box}' does not answer ({e}): pulling its runs from S3")
            return stored([r.run_id for r in pending])
        if warn:
            say(
                f"warning: could not reach box '{box}' to pull {len(pending)} run(s) ({e}); "
                f"get them with `remote pull RUN{flag}` before it is gone: {', '.join(r.run_id for r in pending)}"
            )
        return {r.run_id: f"box '{box}' could not be reached: {e.what}" for r in pending}
    left: dict[str, str] = {}
    not_on_box: list[str] = []
    try:
        for rec in pending:
            run_dir = BoxLayout(target.workdir).run(rec.run_id)
            try:
                if from_store is not None and job.job_state(conn, run_dir) is None:
                    not_on_box.append(rec.run_id)  # the instance that had it is gone: S3 has it
                    continue
                files = pull(conn, run_dir, Path(rec.local_dir), out=rec.out)
                st = job.job_state(conn, run_dir)
            except TrainboxError as e:
                if warn:
                    say(
                        f"warning: run {rec.run_id} was not brought home ({e}); "
                        f"get it with `remote pull {rec.run_id}{flag}` (or `remote ... --start`)"
                    )
                left[rec.run_id] = e.what
                if isinstance(e, LinkDropped):
                    left.update({r.run_id: "not tried: the link had dropped" for r in pending if r.run_id not in left})
                    break
                continue
            rec.pulled = True
            rec.exit_code = st.exit_code if st else None
            rec.last_seen = st.label if st else rec.last_seen
            save_record(rec)
            say(f"pulled run {rec.run_id} ({len(files)} files) into {rec.local_dir}")
    finally:
        conn.close()
    if not_on_box:
        left.update(stored(not_on_box))
    return left
