"""Incremental, atomic push of a directory to the box over one SSH channel.

1. Scan both sides: (path, size, whole-second mtime) of every file. The
   remote side is listed with one ``find``, so it is the truth on disk,
   never a manifest that could go stale.
2. Send only new or changed files, as ONE tar stream into ``tar -x`` on
   the box (not one SFTP round trip per file), with a list of deletions
   riding in the same stream.
3. Atomic: the box's completion marker is removed before anything changes
   and written last, so an interrupted push never looks complete; files
   cut short have the wrong size or mtime, so the next push resends them.
"""
from __future__ import annotations

import hashlib
import io
import os
import shlex
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from provision.errors import UsageError

MARKER = ".trainbox-complete"
DELETE_LIST = ".trainbox-delete"
SKIP_DIRS = {"__pycache__", ".git", ".ipynb_checkpoints"}
CHUNK = 1 << 20


@dataclass(frozen=True)
class Entry:
    size: int
    mtime: int


@dataclass
class Plan:
    send: list[str] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)
    send_bytes: int = 0
    files: int = 0
    complete: bool = False  # the box already had a complete copy

    @property
    def noop(self) -> bool:
        return self.complete and not self.send and not self.delete


def scan_local(root: Path) -> dict[str, Entry]:
    if not root.is_dir():
        raise UsageError(f"{root} is not a directory")
    found: dict[str, Entry] = {}
    stack = [""]
    while stack:
        rel = stack.pop()
        with os.scandir(root / rel if rel else root) as it:
            for e in it:
                path = f"{rel}/{e.name}" if rel else e.name
                if e.is_dir(follow_symlinks=True):
                    if e.name not in SKIP_DIRS:
                        stack.append(path)
                elif e.is_file(follow_symlinks=True) and not e.name.endswith(".pyc") and e.name != MARKER:
                    st = e.stat()
                    found[path] = Entry(st.st_size, int(st.st_mtime))
    return found


def scan_remote_command(remote_dir: str) -> str:
    d = shlex.quote(remote_dir)
    return (
        f"if cd {d} 2>/dev/null; then "
        f"find . -type f ! -name {MARKER} ! -name {DELETE_LIST} -printf '%P\\t%s\\t%T@\\n'; "
        f"[ -e {MARKER} ] && echo '#complete'; fi; true"
    )


def parse_remote_scan(text: str) -> tuple[dict[str, Entry], bool]:
    found, complete = {}, False
    for line in text.splitlines():
        if line == "#complete":
            complete = True
            continue
        path, size, mtime = line.rsplit("\t", 2)
        found[path] = Entry(int(size), int(float(mtime)))
    return found, complete


def make_plan(local: dict[str, Entry], remote: dict[str, Entry], complete: bool) -> Plan:
    send = sorted(p for p, e in local.items() if remote.get(p) != e)
    delete = sorted(p for p in remote if p not in local)
    return Plan(send, delete, sum(local[p].size for p in send), len(local), complete)


def digest(local: dict[str, Entry]) -> str:
    h = hashlib.sha256()
    for p in sorted(local):
        h.update(f"{p}\t{local[p].size}\t{local[p].mtime}\n".encode())
    return h.hexdigest()


def apply_command(remote_dir: str, marker_text: str) -> str:
    d = shlex.quote(remote_dir)
    return (
        f"set -e; mkdir -p {d}; cd {d}; rm -f {MARKER}; "
        f"tar -x --no-same-owner --no-same-permissions -f -; "
        f"if [ -e {DELETE_LIST} ]; then xargs -0 rm -f -- < {DELETE_LIST}; rm -f {DELETE_LIST}; fi; "
        f"find . -mindepth 1 -type d -empty -delete; "
        f"printf %s {shlex.quote(marker_text)} > {MARKER}.tmp && mv {MARKER}.tmp {MARKER}"
    )


class _ChannelWriter(io.RawIOBase):
    def __init__(self, channel, progress: Callable[[int], None]):
        self.channel = channel
        self.progress = progress

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        self.channel.sendall(b)
        self.progress(len(b))
        return len(b)


def _tarinfo(name: str, entry: Entry, mode: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = entry.size
    info.mtime = entry.mtime
    info.mode = mode & 0o777
    return info


def write_tar(out, root: Path, plan: Plan, local: dict[str, Entry]) -> None:
    with tarfile.open(fileobj=out, mode="w|", bufsize=CHUNK, format=tarfile.PAX_FORMAT) as tar:
        for rel in plan.send:
            path = root / rel
            with open(path, "rb") as f:
                tar.addfile(_tarinfo(rel, local[rel], os.fstat(f.fileno()).st_mode), f)
        if plan.delete:
            data = b"\0".join(p.encode() for p in plan.delete)
            tar.addfile(_tarinfo(DELETE_LIST, Entry(len(data), 0), 0o600), io.BytesIO(data))


def push(conn, local_root: Path, remote_dir: str, progress_factory=None) -> Plan:
    """Make remote_dir an exact copy of local_root, sending only what changed."""
    from .connection import exec_channel, finish, run

    local = scan_local(local_root)
    remote, complete = parse_remote_scan(run(conn, scan_remote_command(remote_dir), "listing the box's copy"))
    plan = make_plan(local, remote, complete)
    if plan.noop:
        return plan
    bar = progress_factory(plan.send_bytes) if progress_factory else None
    channel = exec_channel(conn, apply_command(remote_dir, digest(local)))
    try:
        write_tar(_ChannelWriter(channel, bar.update if bar else (lambda n: None)), local_root, plan, local)
        finish(channel, f"unpacking into {remote_dir}")
    finally:
        channel.close()
        if bar:
            bar.close()
    return plan
