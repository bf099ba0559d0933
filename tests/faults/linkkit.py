"""A box whose SSH link a test can cut: an sshd of the test's own on
127.0.0.1 (its pid and start time recorded), and the kill of the one session
process of it that serves a given command (a child of that sshd, checked
before it is signalled). Killing it closes the TCP connection from the box's
side, as a dropped link does; what the session had started on the box (tar,
a shell) loses its stdin and stdout, as it would."""

from __future__ import annotations

import getpass
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

from testkit import start_cli, wait_for


@dataclass(frozen=True)
class OwnSshd:
    dir: Path
    port: int
    pid: int
    started: str  # the listener's start time (procs.start_time), checked before any signal
    key: Path
    host_key: str

    @property
    def spec(self) -> str:
        return f"{getpass.getuser()}@127.0.0.1:{self.port}"


def of_fixture(server, key: Path) -> OwnSshd:
    """A session-wide sshd a fixture started (provision.sshd's SshServer, its pid recorded), as an OwnSshd."""
    from common import procs

    started = procs.start_time(server.pid)
    assert started, "the fixture's sshd is not running"
    return OwnSshd(server.dir, server.port, server.pid, started, key, server.host_key)


def start_sshd(d: Path) -> OwnSshd:
    from common import hostkeys, paths, procs
    from sandbox import sshd

    d.mkdir(parents=True, exist_ok=True)
    private, public = sshd.new_private_key()
    key = d / "client_key"
    paths.write_private(key, private)
    server = sshd.start(d / "server", [public])
    started = procs.start_time(server.pid)
    assert started, "the sshd just started has no start time"
    hostkeys.pin("127.0.0.1", server.port, [server.host_key])
    return OwnSshd(d, server.port, server.pid, started, key, server.host_key)


def stop_sshd(server: OwnSshd) -> None:
    from common import procs

    if procs.recorded_alive(server.pid, server.started):
        procs.terminate(server.pid)


def _ppid(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def session_serving(server: OwnSshd, needle: str) -> int | None:
    """The session process (a child of server's listener) under which a
    process whose command line holds needle runs; None if there is none."""
    from common import procs

    for child in procs.descendants(server.pid):
        if _ppid(child) != server.pid:
            continue
        if any(needle in _cmdline(p) for p in procs.descendants(child)):
            return child
    return None


def only_session(server: OwnSshd) -> int | None:
    """The one session of server (a child of its listener), when there is exactly one."""
    from common import procs

    sessions = [c for c in procs.descendants(server.pid) if _ppid(c) == server.pid]
    return sessions[0] if len(sessions) == 1 else None


def cut(server: OwnSshd, needle: str | None, timeout: float = 30, box_side_done: bool = False) -> int:
    """Kill (SIGKILL) the session of server that serves the command holding
    needle (None: its only session, idle or not), once there is one; its pid. Only a child of the listener this
    test started (pid and start time rechecked) is ever signalled. ``box_side_done``: then wait
    (bounded) until what the session had started on the box (its shell, tar) has ended by
    itself, as it goes on doing on a real box after its link dropped, so that a test looks at
    the box once its own clean-up is over, not in the middle of it."""
    from common import procs

    find = (lambda: only_session(server)) if needle is None else (lambda: session_serving(server, needle))
    session = wait_for(f"an sshd session running {needle or 'anything'!r}", find, timeout)
    assert procs.recorded_alive(server.pid, server.started), "the test's sshd is gone"
    assert _ppid(session) == server.pid and session > 1, "not a session of the test's sshd"
    # A login other than root has two: the privileged monitor (the listener's
    # child) and, below it, the user's own sshd process that holds the socket.
    user_side = [p for p in procs.descendants(session) if _ppid(p) == session and _cmdline(p).startswith("sshd:")]
    started = {p: procs.start_time(p) for p in procs.descendants(session) if p not in user_side}
    for pid in (session, *user_side):
        os.kill(pid, signal.SIGKILL)
    for pid in (session, *user_side):
        wait_for("the killed session to be gone", lambda pid=pid: not procs.alive(pid), 10)
    if box_side_done:
        for pid, when in started.items():
            if when:
                wait_for(
                    "the box's side of the cut session to end", lambda p=pid, w=when: not procs.recorded_alive(p, w), 30
                )
    return session


def target(server: OwnSshd, workdir: Path):
    from remote.target import Target

    return Target("127.0.0.1", server.port, getpass.getuser(), str(server.key), str(workdir), python=sys.executable)


def start_cli_box(server: OwnSshd, workdir: Path, verb: list[str], rest: list[str], out: Path):
    """`remote VERB... --host/--identity/--workdir (server) REST...` started in a subprocess (testkit.start_cli)."""
    flags = ["--host", server.spec, "--identity", str(server.key), "--workdir", str(workdir)]
    return start_cli("remote", *verb, *flags, *rest, out=out, cwd=out.parent)


def start_hooked_sshd(d: Path, force_command: Path) -> OwnSshd:
    """start_sshd's server, with sshd's own ForceCommand hook: every command the
    session runs goes through ``force_command`` (the original is in
    $SSH_ORIGINAL_COMMAND), which can hold a command at a chosen moment."""
    from common import hostkeys, paths, procs
    from sandbox import sshd

    d.mkdir(parents=True, exist_ok=True)
    private, public = sshd.new_private_key()
    key = d / "client_key"
    paths.write_private(key, private)
    conf = d / "server"
    conf.mkdir(exist_ok=True)
    host_private, host_public = sshd.new_private_key()
    paths.write_private(conf / "host_ed25519_key", host_private)
    (conf / "authorized_keys").write_text(public.strip() + "\n")
    port = procs.free_port()
    config = sshd.CONFIG.format(port=port, dir=conf, users=getpass.getuser())
    # exec: the hook's parent is the session's own sshd process, which the hook watches.
    (conf / "sshd_config").write_text(config + f"ForceCommand exec /bin/bash {force_command}\n")
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, parents=True, exist_ok=True)
    pid = procs.spawn([sshd.sshd_binary(), "-D", "-e", "-f", str(conf / "sshd_config")], conf / "sshd.log")
    assert procs.wait_for_port(port, pid, timeout=10), (conf / "sshd.log").read_text()
    started = procs.start_time(pid)
    assert started, "the sshd just started has no start time"
    host_key = " ".join(host_public.split()[:2])
    hostkeys.pin("127.0.0.1", port, [host_key])
    return OwnSshd(d, port, pid, started, key, host_key)
