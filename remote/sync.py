"""Incremental, atomic push of a directory to the box over one SSH channel.

1. Scan both sides: (path, size, whole-second mtime) of every file. The
   remote side is listed with one ``find``, so it is the truth on disk,
   never a manifest that could go stale.
2. A file whose size matches but whose mtime differs (touched, copied,
   re-extracted) is hashed on both sides (sha256, the box's in one
   ``sha256sum`` call over just those files); if the content is the same it
   is not resent, only its mtime is set on the box, so the next scan matches.
3. Send only new or changed files, as ONE tar stream into ``tar -x`` on
   the box (not one SFTP round trip per file), with a list of deletions and
   of mtimes to fix riding in the same stream.
4. Atomic: the box's completion marker is removed before anything changes
   and written last, only if the stream's final entry arrived (tar alone
   accepts an archive cut between two members), so an interrupted push
   never looks complete.
5. Whole or absent: the stream's first entry lists each file it is about
   to write with its size and mtime. When the stream is cut (a dropped
   link) or tar fails (a full disk), the box removes every listed file that
   is not exactly that (the one cut short, and those not reached yet), so
   no half-written file is left under its name; the next push's scan does
   the same first, in case the box's shell died too. A resumed push then
   sends only what is missing: the listed files that arrived whole are
   checked by content (hashes on both sides) instead of being sent again.

Why ~500 lines: the scan, the plan, the stream and the box-side shell of
one protocol, kept together so each step's contract with the others reads on
one page (the tar writer itself is tarstream.py).
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from box.layout import DATA_COMPLETE
from common.errors import UsageError

from .tarstream import FLUSH, TarWriter
from .wirecodec import Codec, already_compressed
from .wirecodec import make as make_codec

MARKER = DATA_COMPLETE  # a pushed copy is complete once this holds its digest
DELETE_LIST = ".trainbox-delete"
TOUCH_LIST = ".trainbox-touch"
SKIP_DIRS = {"__pycache__", ".git", ".ipynb_checkpoints"}
END = ".trainbox-end"  # the stream's last entry: its presence proves nothing was cut
# The stream's first entry: what it is about to write, one "size<TAB>mtime<TAB>path"
# record each, NUL-terminated. After a cut the box removes the listed files that
# are not exactly that (CLEAN_PENDING), and the next push checks the others by content.
PENDING = ".trainbox-pending"
OURS = {MARKER, DELETE_LIST, TOUCH_LIST, END, PENDING}
CHUNK = 1 << 20
BULK_CIPHERS = (
    "aes128-gcm@openssh.com,aes256-gcm@openssh.com,chacha20-poly1305@openssh.com,aes128-ctr,aes192-ctr,aes256-ctr"
)
OPENSSH_FROM = 16 << 20  # bytes to send from which the stream goes through the OpenSSH client


@dataclass(frozen=True)
class Entry:
    size: int
    mtime: int  # whole seconds

    @classmethod
    def of(cls, st: os.stat_result) -> Entry:
        return cls(st.st_size, int(st.st_mtime))


# find's listing of the files under a directory, one "path<TAB>size<TAB>mtime"
# record each, NUL-terminated (a file name may hold a newline; never a NUL),
# read by parse_listing. %T@, not %Ts: %Ts converts through the time zone for
# each file, twice as slow over 25,000 files.
FIND_PRINTF = "-printf '%P\\t%s\\t%T@\\0'"


def parse_listing_line(line: str) -> tuple[str, Entry]:
    path, size, mtime = line.rsplit("\t", 2)
    return path, Entry(int(size), int(float(mtime)))


def parse_listing(text: str):
    """(path, Entry) for each record of a FIND_PRINTF listing; RemoteError for one that is not."""
    from common.errors import RemoteError

    for record in text.split("\0"):
        if record:
            try:
                yield parse_listing_line(record)
            except ValueError:
                raise RemoteError(
                    f"the box's file listing has a record that is not path, size, time: {record[:80]!r}"
                ) from None


@dataclass
class Plan:
    send: list[str] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)
    touch: list[str] = field(default_factory=list)  # same content, only the mtime differs
    send_bytes: int = 0
    files: int = 0
    complete: bool = False  # the box already had a complete copy
    sent_bytes: int = 0  # the stream's length as sent (compressed), headers included
    tar_bytes: int = 0  # the tar stream's length before compression

    @property
    def noop(self) -> bool:
        return self.complete and not self.send and not self.delete and not self.touch


def scan_local(root: Path, skip: Callable[[str, bool], bool] | None = None) -> dict[str, Entry]:
    """Every file under root (links followed), but those ``skip(rel, is_dir)``
    leaves home (a skipped directory is not entered: see remote/ignore.py), or
    UsageError naming the links that lead outside root (a data set must never
    carry a file from elsewhere, ~/.aws/credentials say, to the box) or back
    into a folder above them (a loop). An ignored link is never looked at."""
    if not root.is_dir():
        raise UsageError(f"{root} is not a directory")
    found: dict[str, Entry] = {}
    top = os.path.realpath(root)
    outside: list[str] = []
    loops: list[str] = []
    stack: list[tuple[str, tuple[str, ...]]] = [("", (top,))]  # (folder, the real paths of it and those above it)
    while stack:
        rel, above = stack.pop()
        with os.scandir(root / rel if rel else root) as it:
            for e in it:
                path = f"{rel}/{e.name}" if rel else e.name
                if skip and skip(path, e.is_dir(follow_symlinks=True)):
                    continue
                real = None
                if e.is_symlink():
                    real = os.path.realpath(e.path)
                    if not os.path.exists(real) and os.path.islink(real):
                        loops.append(path)  # a link to itself, or a ring of links
                        continue
                    if os.path.commonpath([top, real]) != top:
                        outside.append(path)
                        continue
                if e.is_dir(follow_symlinks=True):
                    if e.name in SKIP_DIRS:
                        continue
                    real = real or os.path.realpath(e.path)
                    if real in above:
                        loops.append(path)
                        continue
                    stack.append((path, (*above, real)))
                elif e.is_file(follow_symlinks=True) and not e.name.endswith(".pyc") and e.name not in OURS:
                    found[path] = Entry.of(e.stat())
    for what, paths, fix in (
        ("lead outside the data set", outside, "copy the files in, or remove the links"),
        ("loop back to a folder above them", loops, "remove the links"),
    ):
        if paths:
            paths.sort()
            named = ", ".join(paths[:3]) + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")
            raise UsageError(f"{root}: {len(paths)} symlink(s) {what} and nothing was sent: {named}", fix)
    return found


def box_only(remote: dict[str, Entry], skip: Callable[[str, bool], bool] | None = None) -> dict[str, Entry]:
    """The box's listing less what the laptop never sends: ``__pycache__``
    and the other SKIP_DIRS, ``*.pyc`` (python on the box writes them into
    the pushed code) and what ``skip`` leaves home (a project's ignored
    paths). Ignored paths are neither sent nor deleted: they are the box's."""
    dirs: dict[str, bool] = {}

    def dir_skipped(d: str) -> bool:
        if d not in dirs:
            parent, _, name = d.rpartition("/")
            dirs[d] = (bool(parent) and dir_skipped(parent)) or name in SKIP_DIRS or bool(skip and skip(d, True))
        return dirs[d]

    kept = {}
    for path, entry in remote.items():
        parent, _, name = path.rpartition("/")
        if name.endswith(".pyc") or (parent and dir_skipped(parent)) or (skip and skip(path, False)):
            continue
        kept[path] = entry
    return kept


def scan_remote_command(remote_dir: str) -> str:
    d = shlex.quote(remote_dir)
    return (
        f"if cd {d} 2>/dev/null; then "
        f"[ -e {PENDING} ] && {clean_pending_command()}; "
        f"find . -type f ! -name {MARKER} ! -name {DELETE_LIST} ! -name {TOUCH_LIST} ! -name {END} ! -name {PENDING} {FIND_PRINTF}; "
        f"[ -e {MARKER} ] && printf '/complete\\0'; "
        f"[ -e {PENDING} ] && sed -z 's|^|/pending\\t|' {PENDING}; fi; "
        # Which decoder the push's stream may use (wirecodec.py): zstd's, if the box has it.
        "command -v zstd >/dev/null 2>&1 && printf '/zstd\\0'; true"
    )


def parse_remote_scan(text: str) -> tuple[dict[str, Entry], bool, set[str]]:
    """What scan_remote_command printed: the box's files, whether its copy is
    complete, and the files a cut push was writing (to check by content).
    find's paths are relative: a record that starts with "/" is one of the
    markers, never a file."""
    found: dict[str, Entry] = {}
    complete = False
    pending: set[str] = set()
    unsure: set[str] = set()
    records = text.split("\0")
    for record in records:
        if record == "/complete":
            complete = True
        elif record.startswith("/pending\t"):
            parsed = parse_pending(record.split("\t", 1)[1])
            (pending if parsed else unsure).add(parsed[0] if parsed else record.split("\t", 1)[1])
    listing = "\0".join(r for r in records if not r.startswith("/"))
    for path, entry in parse_listing(listing):
        if path not in unsure:  # an older trainbox's record (a path alone): resent
            found[path] = entry
    return found, complete, pending & set(found)


def box_has_zstd(text: str) -> bool:
    """Whether scan_remote_command found the zstd binary on the box."""
    return "/zstd" in text.split("\0")


# How the stream is compressed (remote/wirecodec.py): auto, zstd, gzip, ssh
# (OpenSSH's own -C) or none. auto, as measured in bench/link.py
# (docs/reliability.md): none for a box on this machine (the sandbox's: no link
# to save, only CPU to spend), else zstd where the box has its binary, else gzip.
COMPRESS_ENV = "TRAINBOX_PUSH_COMPRESS"
COMPRESS_CHOICES = ("auto", "zstd", "gzip", "ssh", "none")


# auto sends the plain stream when less than this share of the bytes to send
# could shrink (a data set of JPEGs: bench/sync.py, docs/reliability.md).
COMPRESS_FROM = 0.05


def worth_compressing(plan: Plan, local: dict[str, Entry], raw: set[str]) -> bool:
    """Whether at least COMPRESS_FROM of the bytes to send are not already compressed."""
    return sum(local[p].size for p in plan.send if p not in raw) >= COMPRESS_FROM * plan.send_bytes


def choose_compression(asked: str | None, box_zstd: bool, loopback: bool = False) -> str:
    """The codec a push uses: ``asked``, else $TRAINBOX_PUSH_COMPRESS, else auto."""
    asked = asked or os.environ.get(COMPRESS_ENV) or "auto"
    if asked not in COMPRESS_CHOICES:
        raise UsageError(
            f"{COMPRESS_ENV}={asked} is not a way to compress a push",
            f"use one of {', '.join(COMPRESS_CHOICES)}, or unset it",
        )
    if asked == "auto":
        return "none" if loopback else "zstd" if box_zstd else "gzip"
    return asked


def is_loopback(host: str) -> bool:
    """Whether host is this machine (127.0.0.0/8, ::1, localhost)."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def pending_record(path: str, entry: Entry) -> bytes:
    return f"{entry.size}\t{entry.mtime}\t{path}".encode(errors="surrogateescape") + b"\0"


def parse_pending(record: str) -> tuple[str, Entry] | None:
    """(path, Entry) of a PENDING record, or None for one that is not size, mtime, path."""
    size, _, rest = record.partition("\t")
    mtime, _, path = rest.partition("\t")
    if not (size.isdigit() and mtime.isdigit() and path):
        return None
    return path, Entry(int(size), int(mtime))


# The box's python3 (every box has one: box/ runs on it) removes each file
# PENDING lists that is not exactly as listed: cut short, or not reached yet.
CLEAN_PENDING = r"""
import os
for r in open(PENDING, "rb").read().split(b"\0"):
    size, _, rest = r.partition(b"\t")
    mtime, _, path = rest.partition(b"\t")
    if size.isdigit() and mtime.isdigit() and path:
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if (st.st_size, int(st.st_mtime)) != (int(size), int(mtime)):
            os.unlink(path)
"""


def clean_pending_command() -> str:
    return f"python3 -c {shlex.quote(f'PENDING = {PENDING!r}' + CLEAN_PENDING)}"


def make_plan(
    local: dict[str, Entry],
    remote: dict[str, Entry],
    complete: bool,
    same_content: Callable[[list[str]], set[str]] = lambda paths: set(),
) -> Plan:
    """What to send, delete and re-date. ``same_content(paths)`` says which of
    the size-equal, mtime-different paths hold the same bytes on both sides."""
    changed = [p for p, e in local.items() if remote.get(p) != e]
    touched = [p for p in changed if remote.get(p) is not None and remote[p].size == local[p].size]
    touch = sorted(same_content(touched)) if touched else []
    skip = set(touch)
    send = sorted(p for p in changed if p not in skip)
    delete = sorted(p for p in remote if p not in local)
    return Plan(send, delete, touch, sum(local[p].size for p in send), len(local), complete)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def hash_remote_command(remote_dir: str) -> str:
    # Paths come NUL-separated on stdin; -z makes sha256sum print them unescaped.
    return f"cd {shlex.quote(remote_dir)} && xargs -0 -r sha256sum -z --"


def parse_remote_hashes(data: bytes) -> dict[str, str]:
    out = {}
    for rec in data.split(b"\0"):
        if rec:
            digest_, _, path = rec.decode(errors="surrogateescape").partition("  ")
            out[path] = digest_.lstrip("\\")
    return out


def digest(local: dict[str, Entry]) -> str:
    h = hashlib.sha256()
    for p in sorted(local):
        h.update(f"{p}\t{local[p].size}\t{local[p].mtime}\n".encode())
    return h.hexdigest()


DISK_FULL = 28  # the apply command's exit code when the box's disk filled (ENOSPC's number)


def apply_command(remote_dir: str, marker_text: str, decoder: str = "") -> str:
    """The box's side of the push: ``decoder`` (wirecodec's, if the stream
    is compressed) into tar -x, then the lists, then the marker."""
    d = shlex.quote(remote_dir)
    untar = "tar -x --no-same-owner --no-same-permissions -f -"
    # The decoder's errors (a cut frame) join tar's; tar's status decides, with the end entry.
    unpack = f"{{ {decoder} | {untar}; }}" if decoder else untar
    return (
        f"mkdir -p {d} && cd {d} || exit 1; rm -f {MARKER} {END}; "
        # A dropped link closes tar's stdin and this shell's stderr: SIGPIPE
        # ignored, so neither dies before the half-written files are removed.
        # tar's errors are kept in memory (a full disk takes no file).
        "trap '' PIPE; "
        f"err=$({unpack} 2>&1); rc=$?; "
        # tar accepts an archive cut at a member boundary; the end entry does not lie.
        f"if [ $rc != 0 ] || [ ! -e {END} ]; then rm -f {END}; {clean_pending_command()}; "
        f'case "$err" in *"No space left"*) '
        f"echo \"$(df -Pk . | awk 'NR==2 {{print $4}}') KB free\" >&2; exit {DISK_FULL};; esac; "
        'echo "the tar stream was cut short: $err" | tail -n 3 >&2; exit 1; fi; '
        f"set -e; rm -f {END} {PENDING}; "
        f"if [ -e {DELETE_LIST} ]; then xargs -0 rm -f -- < {DELETE_LIST}; rm -f {DELETE_LIST}; fi; "
        # The touch list: NUL-separated pairs "mtime", "path".
        f"if [ -e {TOUCH_LIST} ]; then while IFS= read -r -d '' m && IFS= read -r -d '' p; "
        f'do touch -m -d "@$m" -- "$p"; done < {TOUCH_LIST}; rm -f {TOUCH_LIST}; fi; '
        f"find . -mindepth 1 -type d -empty -delete; "
        f"printf %s {shlex.quote(marker_text)} > {MARKER}.tmp && mv {MARKER}.tmp {MARKER}"
    )


def write_tar(
    root: Path,
    plan: Plan,
    local: dict[str, Entry],
    progress: Callable[[int], None] = lambda n: None,
    codec: Codec | None = None,
    raw: set[str] | None = None,
    **sink,
) -> TarWriter:
    """The push's tar stream out to ``send=`` or ``fd=`` through ``codec``
    (see TarWriter); ``raw``: the files already compressed, if known."""
    tar = TarWriter(progress=progress, codec=codec, **sink)
    tar.add_bytes(PENDING, b"".join(pending_record(p, local[p]) for p in plan.send))
    for rel in plan.send:
        tar.add_file(
            rel, os.path.join(root, rel), local[rel].size, local[rel].mtime, None if raw is None else rel in raw
        )
    if plan.delete:
        tar.add_bytes(DELETE_LIST, b"\0".join(p.encode(errors="surrogateescape") for p in plan.delete))
    if plan.touch:
        tar.add_bytes(
            TOUCH_LIST, b"".join(f"{local[p].mtime}\0{p}\0".encode(errors="surrogateescape") for p in plan.touch)
        )
    tar.add_bytes(END, b"")
    tar.close()
    return tar


def openssh_argv(conn, command: str, compression: bool = False) -> list[str] | None:
    """The OpenSSH client command running command on conn's host, or None.

    paramiko moves ~35 MB/s through its pure-Python packet layer; the OpenSSH
    client runs at the cipher's speed (3-4x faster on loopback, see
    bench/sync.py). Same key, same pinned known_hosts, no prompt, no agent.
    ``TRAINBOX_SSH_CLIENT=paramiko`` turns it off. ``compression``: ssh's
    own (-C, zlib), measured against zstd in bench/link.py.
    """
    from common import openssh, paths

    keys = (conn.connect_kwargs or {}).get("key_filename") or []
    ssh = shutil.which("ssh")
    if os.environ.get("TRAINBOX_SSH_CLIENT") == "paramiko" or not ssh or len(keys) != 1:
        return None
    return openssh.argv(
        ssh,
        conn.user,
        conn.host,
        conn.port,
        keys[0],
        str(paths.known_hosts()),
        batch=True,
        # AES-GCM first: with AES in hardware (every x86 and ARM server and
        # laptop of the last decade) it moves bulk data ~20 % faster than
        # OpenSSH's default first choice, chacha20 (bench/sync.py). The others
        # stay as fallbacks.
        options=["-o", f"Ciphers={BULK_CIPHERS}"] + (["-o", "Compression=yes"] if compression else []),
        command=[command],
    )


def _send_openssh(argv, stream: Callable[[int], int], remote_dir: str) -> int:
    """stream(fd) into ``ssh ... command``'s stdin; the bytes sent."""
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stdin is not None and proc.stderr is not None  # both PIPE
    _widen_pipe(proc.stdin.fileno())
    sent = 0
    try:
        try:
            sent = stream(proc.stdin.fileno())
            proc.stdin.close()
        except BrokenPipeError:
            pass
        err = proc.stderr.read().decode(errors="replace").strip()
        code = proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    applied(code, err, remote_dir, via_openssh=True)
    return sent


def _widen_pipe(fd: int) -> None:
    """A 1 MB pipe to ssh (Linux; 64 KB by default), so reading files here
    and encrypting there overlap instead of taking turns."""
    try:
        import fcntl

        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, FLUSH)
    except (ImportError, AttributeError, OSError):
        pass


def push(
    conn,
    local_root: Path,
    remote_dir: str,
    progress_factory=None,
    local: dict[str, Entry] | None = None,
    skip: Callable[[str, bool], bool] | None = None,
    compress: str | None = None,
) -> Plan:
    """Make remote_dir an exact copy of local_root, sending only what changed.

    ``progress_factory(total_file_bytes)`` makes a bar with ``update(n)`` and
    ``close()``; the returned plan's ``sent_bytes`` is the stream's length.
    ``local``: local_root's scan_local, when the caller has it (a filtered
    one); ``skip``: the filter it was made with, so that the box's files it
    matches are left alone rather than deleted (see box_only); ``compress``:
    one of COMPRESS_CHOICES (default: $TRAINBOX_PUSH_COMPRESS, else auto).
    """

    from .connection import during, exec_channel, exit_of, finish

    # The box lists its copy while this side scans the local one.
    listing = exec_channel(conn, scan_remote_command(remote_dir))
    try:
        local = scan_local(local_root) if local is None else local
        text = listing.makefile("rb").read().decode(errors="surrogateescape")
        finish(listing, "listing the box's copy")
    finally:
        listing.close()
    remote, complete, pending = parse_remote_scan(text)
    how = choose_compression(compress, box_has_zstd(text), is_loopback(conn.host))
    remote = box_only(remote, skip)

    def same_content(paths: list[str]) -> set[str]:
        channel = exec_channel(conn, hash_remote_command(remote_dir))
        channel.sendall(b"".join(p.encode(errors="surrogateescape") + b"\0" for p in paths))
        channel.shutdown_write()
        theirs = parse_remote_hashes(channel.makefile("rb").read())
        finish(channel, f"hashing files in {remote_dir}")
        return {p for p in paths if theirs.get(p) == sha256_file(local_root / p)}

    # What a cut push left whole is kept (a resumed push sends only the rest),
    # once its content is checked: size and mtime are what tar was told, not proof.
    arrived = sorted(p for p in pending if p in local and remote.get(p) == local[p])
    whole = same_content(arrived) if arrived else set()
    for p in pending - whole:
        if p in local:
            remote.pop(p, None)
    plan = make_plan(local, remote, complete, same_content)
    if plan.noop:
        return plan
    bar = progress_factory(plan.send_bytes) if progress_factory else None

    raw: set[str] = set()
    if how in ("zstd", "gzip"):
        raw = {p for p in plan.send if already_compressed(p, local_root / p, local[p].size)}
        auto = (compress or os.environ.get(COMPRESS_ENV) or "auto") == "auto"
        if auto and not worth_compressing(plan, local, raw):
            how = "none"  # (nearly) all already compressed: CPU spent for a few headers' bytes
    codec = make_codec("none" if how == "ssh" else how)

    def stream(**sink) -> int:
        tar = write_tar(local_root, plan, local, bar.update if bar else (lambda n: None), codec, raw, **sink)
        plan.tar_bytes = tar.tar_bytes
        return tar.written

    command = apply_command(remote_dir, digest(local), codec.decoder)
    # A new OpenSSH connection costs a handshake (~0.3 s); it pays off only
    # for a stream big enough for paramiko's slower packets to matter
    # (or to compress with ssh's own -C: paramiko's is fixed at connect).
    big = plan.send_bytes >= OPENSSH_FROM or how == "ssh"
    argv = openssh_argv(conn, command, compression=how == "ssh") if big else None
    try:
        with during(conn, f"pushing to {remote_dir}", when="while"):
            if argv:
                plan.sent_bytes = _send_openssh(argv, lambda fd: stream(fd=fd), remote_dir)
            else:
                channel = exec_channel(conn, command)
                try:
                    plan.sent_bytes = stream(send=channel.sendall)
                    applied(*exit_of(channel), remote_dir)
                finally:
                    channel.close()
    finally:
        if bar:
            bar.close()
    return plan


def applied(code: int, err: str, remote_dir: str, via_openssh: bool = False) -> None:
    """The apply command's exit code and stderr as one clear error, if it failed."""
    from common.errors import RemoteError

    from .connection import LinkDropped

    if code == 0:
        return
    if code == DISK_FULL:
        raise RemoteError(
            f"the box's disk is full: the push to {remote_dir} did not fit ({err.splitlines()[-1] if err else 'no space'} "
            "there); no half-written file was kept",
            "free space on the box (`remote data rm`, old runs in its workdir) or give it a bigger volume, "
            "then run the same command again: it sends only what is missing",
        )
    if code == -1 or (via_openssh and code == 255):  # no exit status: the channel or ssh's link went
        raise LinkDropped(
            f"the link to the box dropped while pushing to {remote_dir} ({err[-200:] or 'no exit status'})"
        )
    raise RemoteError(f"unpacking into {remote_dir} failed on the box (exit {code}): {err[-300:]}")
