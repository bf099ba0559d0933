"""``remote tb``: TensorBoard for the box's runs, live, through an SSH tunnel.

- On the box: TensorBoard from the box's environment (trainbox's installs it
  with TensorFlow's pins, remote/setup.py), started detached by
  templates/tensorboard-start.sh.j2, bound to 127.0.0.1 there, and kept
  running: one server per set of runs (``all``: every run of the box, new
  ones included; else the runs asked for), its pid, start time, port and log
  in ``BoxLayout.tensorboard(key)``. A second ``remote tb`` for the same runs
  finds it running (the pid checked with its start time) and reuses it.
  ``remote tb --stop`` ends them; ``provision down`` ends the box with them
  (the sandbox's process box signals each recorded server, sandbox/boxes.py).
- On the laptop: a tunnel of paramiko's ``direct-tcpip`` channels over the
  one SSH connection (the same pinned host key and key as every remote
  command, so ``--host`` boxes work too), listening on 127.0.0.1 only. No
  port of the box is ever opened to the network.
- ``--local``: TensorBoard on the laptop over the pulled runs, from the
  optional ``view`` extra, in a child process (the laptop never imports it).
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
import select
import shlex
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from box import layout as names
from box.layout import BoxLayout
from common.checks import clean
from common.errors import RemoteError, UsageError

from .connection import run

ALL = "all"  # the server of every run of the box
BOX_PORT = "default"  # TensorBoard's own: 6006, or the next free port above it
LOCAL_PORT = 6006  # --local's, when it is free
VIEW_EXTRA = "pip install 'trainbox[view]'"
SERVING = re.compile(rb"TensorBoard \S+ at http://127\.0\.0\.1:(\d+)/")
# Exit codes of the start script (templates/tensorboard-start.sh.j2).
NOT_INSTALLED, DID_NOT_START, NO_SUCH_RUN = 3, 4, 5


def server_key(run_ids: list[str]) -> str:
    """The folder name of the server of these runs (the same set, in any order: the same server)."""
    if not run_ids:
        return ALL
    return "runs-" + hashlib.sha256(",".join(sorted(set(run_ids))).encode()).hexdigest()[:12]


def argv(logdir: str | None, runs: list[tuple[str, str]], port: str | int = BOX_PORT) -> list[str]:
    """TensorBoard's command line (after the interpreter): on 127.0.0.1 only, a logdir or one named run per folder."""
    out = ["-m", "tensorboard.main", "--host", "127.0.0.1", "--port", str(port)]
    if not runs:
        assert logdir is not None, "a logdir or runs"
        return [*out, "--logdir", logdir]
    for _run_id, path in runs:
        if "," in path:
            raise UsageError(
                f"the run folder {path!r} holds a comma, which TensorBoard's --logdir_spec cannot take",
                "use a --workdir without commas",
            )
    return [*out, "--logdir_spec", ",".join(f"{run_id}:{path}" for run_id, path in runs)]


def start_script(layout: BoxLayout, runs: list[tuple[str, str]], *, python: str | None = None) -> str:
    """The bash script for the box's ``bash -s`` that starts the server of ``runs``
    (pairs of run id and folder on the box; none: every run) unless it runs;
    it prints the port. python: an interpreter (--python, the sandbox); else
    trainbox's environment, held by a shared lock on its ready marker while
    the server runs, as a job and Jupyter hold it."""
    import templates

    key = server_key([r for r, _ in runs])
    return templates.render(
        "tensorboard-start.sh.j2",
        python=python or "",
        env=None if python else layout.env_link,
        state_dir=layout.tensorboard(key),
        runs=runs,
        logdir=layout.runs,
        argv=argv(layout.runs, runs),
    )


def start(conn, layout: BoxLayout, runs: list[tuple[str, str]], python: str | None = None) -> int:
    """Start (or find running) the server of runs on the box; the port it listens on there."""
    from .connection import exec_channel

    # The script goes whole, at once (a few KB: within the channel's window),
    # and the box's answer is read to its end: an early `exit` of the script
    # (a server already running) never meets a half-sent stdin.
    channel = exec_channel(conn, "bash -s")
    try:
        channel.sendall(start_script(layout, runs, python=python).encode())
        channel.shutdown_write()
        out = channel.makefile("rb").read().decode(errors="replace")
        err = channel.makefile_stderr("rb").read().decode(errors="replace")
        code = channel.recv_exit_status()
    finally:
        channel.close()
    why = clean((err.strip().splitlines() or [f"exit {code}"])[-1])
    if code == NO_SUCH_RUN:
        raise UsageError(why, "`remote runs` lists the runs started from here, and where each is")
    if code == NOT_INSTALLED:
        raise RemoteError(why)
    if code != 0 or not out.strip().splitlines()[-1:] or not out.strip().splitlines()[-1].isdigit():
        raise RemoteError(f"could not start TensorBoard on the box ({why})")
    return int(out.strip().splitlines()[-1])


def stop_command(layout: BoxLayout) -> str:
    """End every server `remote tb` started on the box: each one whose pid still
    names the process that recorded it (its start time), TERM to its group,
    then KILL after 10 s; prints how many it ended."""
    root = shlex.quote(layout.tensorboards)
    pid, start = names.RUN_PID, names.RUN_PID_START
    return (
        f"{names.START_TIME_SH}; n=0; "
        f'for d in {root}/*/; do [ -d "$d" ] || continue; '
        f'pid=$(cat "${{d}}{pid}" 2>/dev/null); case "$pid" in \'\'|*[!0-9]*|0|1) rm -f "${{d}}{pid}"; continue;; esac; '
        f'if [ -s "${{d}}{start}" ] && [ "$(trainbox_start_time "$pid")" = "$(cat "${{d}}{start}")" ]; then '
        f'{{ kill -TERM -- -"$pid" || kill -TERM "$pid"; }} 2>/dev/null; for i in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done; '
        f'kill -0 "$pid" 2>/dev/null && {{ kill -KILL -- -"$pid" || kill -KILL "$pid"; }} 2>/dev/null; n=$((n + 1)); fi; '
        f'rm -f "${{d}}{pid}" "${{d}}{start}" "${{d}}{names.TB_PORT}"; done; echo $n'
    )


def stop(conn, layout: BoxLayout) -> int:
    """End the box's TensorBoard servers; how many were running."""
    return int(run(conn, stop_command(layout), "stopping TensorBoard").strip().splitlines()[-1])


# ---------------------------------------------------------------- the tunnel


def listen(port: int) -> socket.socket | None:
    """A socket listening on 127.0.0.1:port (0: any free port), or None when the port is taken."""
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        s.close()
        return None
    s.listen(64)
    return s


def taken(port: int) -> UsageError:
    return UsageError(f"local port {port} is taken on this machine", "pick another with --local-port")


def local_listener(port: int, asked: bool, say: Callable[[str], None]) -> socket.socket:
    """The laptop's end, on 127.0.0.1, as ``nb`` picks it: the port asked for
    (taken: UsageError), else ``port`` (the box's), else a free one, said."""
    s = listen(port)
    if s is None and asked:
        raise taken(port)
    if s is None:  # a TensorBoard of the laptop's own often holds 6006 (in the sandbox, the box's own holds its port)
        s = listen(0)
        assert s is not None  # port 0: any free one
        say(f"local port {port} is taken on this machine: using {s.getsockname()[1]} (choose with --local-port)")
    return s


def _pipe(transport, client: socket.socket, port: int) -> None:
    """Carry one local connection to 127.0.0.1:port on the box and back."""
    try:
        channel = transport.open_channel("direct-tcpip", ("127.0.0.1", port), client.getpeername(), timeout=15)
    except Exception:  # noqa: BLE001 (the client left, the box refused the forward, the link dropped: this connection fails, the tunnel goes on)
        client.close()
        return
    try:
        while transport.is_active():
            ready, _, _ = select.select([client, channel], [], [], 1.0)
            if client in ready:
                data = client.recv(65536)
                if not data:
                    break
                channel.sendall(data)
            if channel in ready:
                data = channel.recv(65536)
                if not data:
                    break
                client.sendall(data)
    except OSError:
        pass
    finally:
        channel.close()
        client.close()


def forward(transport, listener: socket.socket, port: int) -> None:
    """Forward every connection to listener to 127.0.0.1:port on the box until
    the SSH connection ends (RemoteError) or Ctrl-C (KeyboardInterrupt)."""
    listener.settimeout(0.5)
    try:
        while transport.is_active():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            client.settimeout(None)
            threading.Thread(target=_pipe, args=(transport, client, port), daemon=True).start()
    finally:
        listener.close()
    raise RemoteError(
        "the SSH connection to the box closed: the tunnel is down",
        "run `remote tb` again once the box is up (TensorBoard runs on while the box does)",
    )


# ---------------------------------------------------------------- --local


def local_runs(recs, wanted: list[str]) -> list[tuple[str, str]]:
    """(run id, folder) of the pulled runs to serve: wanted, else every record given whose folder is here."""
    by_id = {r.run_id: r for r in recs}
    out = []
    for run_id in wanted or sorted(by_id, key=lambda i: by_id[i].created):
        rec = by_id.get(run_id)
        if rec is None:
            raise UsageError(f"no run {run_id} is known here", "`remote runs` lists them")
        folder = Path(rec.local_dir)
        if not folder.is_dir():
            if wanted:
                raise UsageError(
                    f"run {run_id} is not home ({folder} does not exist)", f"bring it home with `remote pull {run_id}`"
                )
            continue
        out.append((run_id, str(folder)))  # as on the box: the run's results, where the model's are in tensorboard/
    return out


def local_argv(runs: list[tuple[str, str]], port: int) -> list[str]:
    """TensorBoard on the laptop, in a child process of this Python: or UsageError naming the extra."""
    if importlib.util.find_spec("tensorboard") is None:
        raise UsageError(
            "`remote tb --local` serves with TensorBoard, which this install lacks", f"install it with `{VIEW_EXTRA}`"
        )
    return [sys.executable, *argv(None, runs, port)]


def serve_local(argv_: list[str], on_url: Callable[[int], None]) -> int:
    """Run TensorBoard until it ends or Ctrl-C; on_url(port) once it listens. Its exit code (0 after Ctrl-C)."""
    proc = subprocess.Popen(argv_, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None  # PIPE
    tail: list[bytes] = []
    try:
        for line in proc.stderr:
            m = SERVING.search(line)
            if m:
                on_url(int(m.group(1)))
                break
            tail = (tail + [line])[-5:]
        else:
            code = proc.wait()
            why = b"".join(tail).decode(errors="replace").strip().splitlines()
            raise UsageError(
                f"TensorBoard did not start on this machine (exit {code}): {why[-1] if why else 'no output'}"
            )
        for _ in proc.stderr:  # drained, so TensorBoard never blocks on a full pipe
            pass
        return proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        return 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
