"""A training job on the box, detached from the SSH session that started it.

Each run lives in ``BoxLayout.run(run_id)`` on the box (box/layout.py names its files): ``run.sh`` (rendered
from templates/run.sh.j2), ``pid``, ``log``, ``exit_code`` (written last),
``resumed`` (how many times it was started again) and ``out/`` (what the
command writes to ``$TRAINBOX_OUT``, what comes home). The job is started with
``setsid nohup``, so closing the laptop, a dropped link or Ctrl-C never stops
it. The job runs any command: nothing here knows what it is.
"""

from __future__ import annotations

import secrets
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO

from box.layout import (
    RUN_BOOT_ID,
    RUN_EXIT_CODE,
    RUN_LOG,
    RUN_PID,
    RUN_PID_START,
    RUN_SPEC,
    RUN_STOPPED,
    START_TIME_SH,
    BoxLayout,
)
from common.errors import RemoteError

from .connection import run, write_file

POLL_S = 0.5


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


def resolve_layout(conn, workdir: str) -> BoxLayout:
    """The box's layout with its workdir made absolute against the login's home
    (a relative workdir, the default ``trainbox``, is relative to it)."""
    layout = BoxLayout(workdir)
    if workdir.startswith("/"):
        return layout
    return layout.at_home(run(conn, 'printf %s "$HOME"', "finding the home directory on the box").strip())


@dataclass(frozen=True)
class JobState:
    pid: int | None
    running: bool
    exit_code: int | None
    stopped: bool = False  # by `remote stop`

    @property
    def label(self) -> str:
        if self.running:
            return "running"
        if self.exit_code is None:
            if self.stopped:
                return "stopped"
            return "died" if self.pid else "not started"
        return "succeeded" if self.exit_code == 0 else f"failed (exit {self.exit_code})"


def render_script(
    layout: BoxLayout,
    run_id: str,
    project_dir: str,
    command: list[str],
    *,
    python: str | None = None,
    env_link: str | None = None,
    data_dir: str | None = None,
    out: str = "out",
    resume_hint: str = "remote run --resume",
    backend: str = "tensorflow",
    nodes: int = 1,
    node: int = 0,
    coordinator: str = "",
) -> str:
    """run.sh for a run: ``command`` (an argv, run exactly as given) in
    ``project_dir``, with TRAINBOX_DATA (data_dir), TRAINBOX_OUT (``out`` in the
    run dir), TRAINBOX_RUN_ID and TRAINBOX_RESUMED set. env_link: an environment
    (a link to its current build), which the job resolves once and holds while
    it runs; else python. Either way ``python`` on the command's PATH is that
    interpreter. backend: KERAS_BACKEND. nodes > 1: this is node ``node`` of
    a multi-node run whose coordinator is ``coordinator`` (HOST:PORT), told to
    the command as TRAINBOX_NODES, TRAINBOX_NODE, TRAINBOX_COORDINATOR."""
    import templates

    run_dir = layout.run(run_id)
    return templates.render(
        "run.sh.j2",
        run_id=run_id,
        run_dir=run_dir,
        project_dir=project_dir,
        command=list(command),
        python=python or "",
        env_link=env_link,
        data_dir=data_dir or "",
        out_dir=f"{run_dir}/{out}",
        resume_hint=f"{resume_hint} {run_id}",
        backend=backend,
        nodes=int(nodes),
        node=int(node),
        coordinator=coordinator,
    )


def run_spec(
    run_id: str,
    project_dir: str,
    command: list[str],
    *,
    data_dir: str | None = None,
    data: dict | None = None,
    env_link: str | None = None,
    backend: str = "tensorflow",
    out: str = "out",
) -> dict:
    """run.json (box/layout.py's RUN_SPEC): what a new instance of a --recover box needs to
    resume the run without the laptop (box/keep.py reads it). data: {"key", "source", "fetch"}."""
    return {
        "run_id": run_id,
        "project_dir": project_dir,
        "data_dir": data_dir or None,
        "data": data,
        "env_link": env_link,
        "backend": backend,
        "command": list(command),
        "out": out,
    }


def start_command(run_dir: str) -> str:
    d = shlex.quote(run_dir)
    return (
        f"cd {d} && rm -f {RUN_PID} {RUN_EXIT_CODE} {RUN_STOPPED} && "
        # setsid: a new session, so no hangup reaches it; all fds closed so the
        # SSH channel can close while the job runs on.
        f"(setsid nohup bash run.sh >/dev/null 2>&1 </dev/null &) && "
        f"for i in $(seq 200); do [ -s {RUN_PID} ] && exit 0; sleep 0.05; done; "
        f"echo 'the job did not write its pid' >&2; exit 1"
    )


def start(conn, run_dir: str, script: str, spec: dict | None = None) -> None:
    """Write run.sh (and run.json, the run's spec) into the run folder, then start the job."""
    import json

    if spec is not None:
        write_file(conn, f"{run_dir}/{RUN_SPEC}", (json.dumps(spec, indent=1) + "\n").encode())
    write_file(conn, f"{run_dir}/run.sh", script.encode())
    run(conn, start_command(run_dir), "starting the job")


def restart(conn, run_dir: str) -> int:
    """Run the run's own run.sh again (it resumes); the log's size before, to follow from."""
    d = shlex.quote(run_dir)
    size = run(conn, f"cd {d} && stat -c %s {RUN_LOG} 2>/dev/null || echo 0", "reading the log's size")
    run(conn, start_command(run_dir), "restarting the job")
    return int(size.strip().splitlines()[-1])


def state_command(run_dir: str) -> str:
    d = shlex.quote(run_dir)
    return (
        f"cd {d} 2>/dev/null || {{ echo missing; exit 0; }}; {START_TIME_SH}; "
        f"pid=$(cat {RUN_PID} 2>/dev/null); code=$(cat {RUN_EXIT_CODE} 2>/dev/null); alive=0; stopped=0; "
        # Alive only if that pid is still the job that wrote it: after a reboot (a spot
        # stop, `provision stop`) another process may have its number.
        f'[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && {{ [ ! -e {RUN_PID_START} ] || '
        f'[ "$(trainbox_start_time "$pid")" = "$(cat {RUN_PID_START})" ]; }} && alive=1; '
        f"[ -e {RUN_STOPPED} ] && stopped=1; "
        'echo "${pid:-none} $alive ${code:-none} $stopped"'
    )


def parse_state(text: str) -> JobState | None:
    line = text.strip()
    if line == "missing" or not line:
        return None
    try:
        pid, alive, code, stopped = line.split()
        exit_code = None if code == "none" else int(code)
        pid = pid if pid == "none" else str(int(pid))
    except ValueError:
        raise RemoteError(
            f"the run's pid or exit_code file on the box holds junk ({line[:80]!r})",
            "inspect the run directory on the box",
        ) from None
    # The exit code is written last, a moment before the script's shell exits:
    # once it is there the job is over, whether or not the pid lingers.
    return JobState(None if pid == "none" else int(pid), alive == "1" and exit_code is None, exit_code, stopped == "1")


def job_state(conn, run_dir: str) -> JobState | None:
    return parse_state(run(conn, state_command(run_dir), "reading the job's state"))


STOP_GRACE_S = 10


def stop(conn, run_dir: str) -> JobState | None:
    """Stop the job's whole process group (the trainer and its children):
    TERM, then KILL if it is still there after STOP_GRACE_S; returns once it is gone."""
    d = shlex.quote(run_dir)
    run(
        conn,
        (
            # Only the job's own group: a pid file that names no job (empty, 0, 1:
            # kill -- -1 is every process), a finished run, or a pid that is now
            # another program's (its start time differs from the one recorded).
            f"cd {d} && pid=$(cat {RUN_PID}) && case $pid in ''|*[!0-9]*|0|1) echo \"the pid file holds no job's pid: $pid\" >&2; exit 1;; esac; "
            f"[ -e {RUN_EXIT_CODE} ] && exit 0; {START_TIME_SH}; "
            f'[ ! -e {RUN_PID_START} ] || [ "$(trainbox_start_time "$pid")" = "$(cat {RUN_PID_START})" ] || exit 0; '
            f'touch {RUN_STOPPED} && kill -TERM -- -"$pid" 2>/dev/null; '
            f'for i in $(seq {STOP_GRACE_S * 10}); do kill -0 -- -"$pid" 2>/dev/null || exit 0; sleep 0.1; done; '
            'kill -KILL -- -"$pid" 2>/dev/null; true'
        ),
        "stopping the job",
    )
    return job_state(conn, run_dir)


RESUME_WAIT_S = 60  # how long a follow waits on a box that is back for its agent to resume the run


def follow_command(run_dir: str, offset: int) -> str:

    d = shlex.quote(run_dir)
    # A run cut off by an earlier boot (its boot_id is not this boot's) is about to
    # be resumed by the box's agent: wait until it has (run.sh writes the new pid,
    # then this boot's id), or is over. Then tail --pid ends once the job has
    # exited and the log is drained.
    return (
        f"cd {d} && touch {RUN_LOG} && b=$(cat /proc/sys/kernel/random/boot_id 2>/dev/null); "
        f"for i in $(seq {RESUME_WAIT_S * 10}); do "
        f'[ -e {RUN_EXIT_CODE} ] || [ -e {RUN_STOPPED} ] || [ ! -s {RUN_BOOT_ID} ] || [ "$(cat {RUN_BOOT_ID})" = "$b" ] '
        "&& break; sleep 0.1; done; "
        f'exec tail -c +{offset + 1} -F -s {POLL_S} --pid="$(cat {RUN_PID})" {RUN_LOG}'
    )


def after_tail_command(run_dir: str) -> str:
    """Why the log's tail ended: over (an exit code, or stopped by the user), the box going
    down (systemd says "stopping": a spot stop, `provision stop`, the guard), a resume
    still to come (the run is of an earlier boot), or the job died."""

    d = shlex.quote(run_dir)
    return (
        f"cd {d} || exit 0; "
        f"if [ -e {RUN_EXIT_CODE} ] || [ -e {RUN_STOPPED} ]; then echo over; "
        'elif [ "$(systemctl is-system-running 2>/dev/null)" = stopping ]; then echo going-down; '
        f'elif [ -s {RUN_BOOT_ID} ] && [ "$(cat {RUN_BOOT_ID})" != "$(cat /proc/sys/kernel/random/boot_id 2>/dev/null)" ]; '
        "then echo resume-pending; "
        "else echo died; fi"
    )


class BoxGoingDown(EOFError):
    """The box is shutting down under a followed run (it resumes when the box is back)."""


WAITING = "box interrupted; waiting for it to come back; Ctrl-C detaches"


class NotBackYet(RemoteError):
    """The box answers, or will, but not yet as the follow needs (a --recover box's new instance
    has not resumed the run): waited for like a box that is away, with its own ``waiting`` line."""

    def __init__(self, what: str, waiting: str):
        super().__init__(what)
        self.waiting = waiting


def resumed_here_command(run_dir: str) -> str:
    """ "here" once the run folder is on this box and its run was started in this boot (or is
    over): a new instance's agent restored and resumed it. Else "restoring"."""
    d = shlex.quote(run_dir)
    return (
        f"cd {d} 2>/dev/null || {{ echo restoring; exit 0; }}; b=$(cat /proc/sys/kernel/random/boot_id 2>/dev/null); "
        f'if [ -e {RUN_EXIT_CODE} ] || [ -e {RUN_STOPPED} ] || {{ [ -s {RUN_PID} ] && [ "$(cat {RUN_BOOT_ID} 2>/dev/null)" = "$b" ]; }}; '
        "then echo here; else echo restoring; fi"
    )


def follow(
    connect: Callable[[], Any],
    run_dir: str,
    out: BinaryIO | None = None,
    offset: int = 0,
    say: Callable[[str], None] = lambda s: None,
    reconnect_for: float | None = 300.0,
    on_tick: Callable[[object], None] | None = None,
    tty: bool = False,
) -> tuple[int, Any]:
    """Stream the log from offset until the job ends, riding through a dropped link and an
    interrupted box.

    When the link drops, or the box goes down under the run (a spot stop, a
    stopped box, a power loss), it reconnects with ``connect`` (which may
    resolve the box's address anew each time: a box that is back may have
    another); a box that does not answer is waited for, up to
    ``reconnect_for`` seconds (None: until Ctrl-C). The box's agent resumes
    the run at boot; the follow goes on in the same log. Returns the bytes
    streamed in all and the live connection. What reaches ``out`` is cleaned
    of terminal control sequences (checks.CleanStream; tty: ``out`` is a
    terminal, which keeps colour and redraws progress lines in place).
    """
    from common.checks import CleanStream

    # stdout as it is now (a default bound at import would hold whatever stdout was then)
    clean = CleanStream(out if out is not None else sys.stdout.buffer, tty=tty)
    try:
        return _follow(connect, run_dir, clean, offset, say, reconnect_for, on_tick)
    finally:
        clean.close()  # a last line without its newline, in a file or pipe


def _follow(connect, run_dir: str, out, offset: int, say, reconnect_for, on_tick) -> tuple[int, Any]:
    import paramiko

    lost = (EOFError, OSError, paramiko.SSHException)
    try:
        conn = connect()
    except NotBackYet as e:  # a box that is being replaced (a --recover box): waited for from the start
        conn = _reattach(connect, None, e, say, reconnect_for)
    pending_rounds = 0
    while True:
        try:
            channel = conn.client.get_transport().open_session()
            channel.exec_command(follow_command(run_dir, offset))
            channel.settimeout(1.0)
            while True:
                try:
                    chunk = channel.recv(65536)
                except TimeoutError:
                    chunk = None
                except OSError:  # socket.timeout on older Pythons
                    chunk = None
                if chunk is None:
                    if on_tick:
                        on_tick(conn)
                    if channel.exit_status_ready() and not channel.recv_ready():
                        break
                    if not conn.client.get_transport() or not conn.client.get_transport().is_active():
                        raise EOFError("the SSH connection dropped")
                    continue
                if not chunk:
                    break
                out.write(chunk)
                out.flush()
                offset += len(chunk)
            channel.close()
            if not conn.client.get_transport() or not conn.client.get_transport().is_active():
                raise EOFError("the SSH connection dropped")
            try:
                why = run(conn, after_tail_command(run_dir), "reading why the log ended").strip()
            except RemoteError:
                if conn.client.get_transport() and conn.client.get_transport().is_active():
                    raise
                raise EOFError("the SSH connection dropped") from None  # the box went down as we asked
            if why == "going-down":
                raise BoxGoingDown("the box is shutting down")
            if why == "resume-pending" and pending_rounds < 2:
                pending_rounds += 1
                continue  # the agent has not resumed it yet: the follow command waits again
            return offset, conn
        except lost as e:
            if isinstance(e, BoxGoingDown):
                say(
                    "the box is shutting down under the run (a spot stop, `provision stop` or the guard): "
                    "the box resumes the run when it is back"
                )
            conn = _reattach(connect, conn, e, say, reconnect_for)
            pending_rounds = 0


def _reattach(connect: Callable[[], Any], old, why: Exception, say: Callable[[str], None], wait_for: float | None):
    """A new connection to the box, waiting for it to come back if it has gone away."""
    try:
        if old is not None:
            old.close()
    except Exception:  # noqa: BLE001 (closing a dead link)
        pass
    if not isinstance(why, (BoxGoingDown, NotBackYet)):
        say(f"connection lost ({why}); reconnecting (the job keeps running)")
    since = time.monotonic()
    said: set[str] = set()
    while True:
        try:
            conn = connect()
        except RemoteError as e:
            if wait_for is not None and time.monotonic() - since > wait_for:
                raise RemoteError(
                    f"lost the connection to the box ({e.what})",
                    "the job keeps running on it: `remote logs RUN --follow` reattaches",
                ) from e
            line = getattr(e, "waiting", None) or WAITING
            if line not in said:  # each way of waiting said once
                say(line)
                said.add(line)
            time.sleep(2)  # the box is away (minutes, for a spot box): one try every 2 s
            continue
        if said:
            say("the box is back: following the run (its agent resumes it)")
        return conn


def log_tail(conn, run_dir: str, lines: int = 20) -> str:
    return run(conn, f"tail -n {lines} {shlex.quote(run_dir)}/{RUN_LOG} 2>/dev/null; true", "reading the log")


def cat_log(conn, run_dir: str, out: BinaryIO, tty: bool = False) -> None:
    """The whole log to out, cleaned (checks.CleanStream: a character split
    between two chunks arrives whole)."""
    from common.checks import CleanStream

    from .connection import exec_channel

    stream = CleanStream(out, tty=tty)
    channel = exec_channel(conn, f"cat {shlex.quote(run_dir)}/{RUN_LOG} 2>/dev/null; true")
    try:
        while chunk := channel.recv(65536):
            stream.write(chunk)
        status = channel.recv_exit_status()
    finally:
        channel.close()
        stream.close()
    if status != 0:
        raise RemoteError(f"reading the log failed on the box (exit {status})")
