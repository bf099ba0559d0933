"""Small helpers for the background servers the sandbox runs on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from box import layout as box_layout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_free(port: int) -> bool:
    """Whether 127.0.0.1:port can be listened on now."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def spawn(argv: list[str], log_file: Path, env: dict | None = None) -> int:
    """Start argv detached in its own session (it outlives this process)."""
    with open(log_file, "ab") as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True, env=env)
    return proc.pid


def alive(pid: int) -> bool:
    try:
        # Reap it if it is our own child that has exited (a zombie answers kill 0).
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    """An exited process nobody has reaped yet (where /proc tells; elsewhere init reaps)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"


# How a job records its pid's start time on the box: box/layout.py.
START_FILE, START_TIME_SH = box_layout.RUN_PID_START, box_layout.START_TIME_SH


def start_time(pid: int) -> str | None:
    """When process pid started, as START_TIME_SH prints it; None if there is none."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        if Path("/proc/self/stat").exists():
            return None
        out = subprocess.run(["ps", "-o", "lstart=", "-p", str(pid)], capture_output=True, text=True).stdout.strip()
        return out or None
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]


def recorded_alive(pid: int, recorded_start: str) -> bool:
    """pid is alive and still the process that recorded recorded_start (not a reuse of its pid)."""
    return pid > 1 and alive(pid) and start_time(pid) == recorded_start.strip()


def terminate(pid: int, timeout: float = 10.0, group: bool = False) -> None:
    """SIGTERM pid (or its process group), SIGKILL if still alive after timeout.

    Never pid <= 1: kill(0) is this process's group, kill(-1) and killpg(1) every process."""
    if pid <= 1:
        raise ValueError(f"refusing to signal pid {pid}")
    kill = os.killpg if group else os.kill
    try:
        kill(pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return
    deadline = time.monotonic() + timeout
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if alive(pid):
        try:
            kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        while alive(pid) and time.monotonic() < deadline + 5:
            time.sleep(0.05)


def descendants(pid: int) -> list[int]:
    """The processes below pid (children, theirs, ...), from `ps` (Linux and macOS alike)."""
    out = subprocess.run(["ps", "-A", "-o", "pid=", "-o", "ppid="], capture_output=True, text=True).stdout
    children: dict[int, list[int]] = {}
    for line in out.splitlines():
        child, parent = (int(x) for x in line.split())
        children.setdefault(parent, []).append(child)
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def wait_for_port(port: int, pid: int, timeout: float, host: str = "127.0.0.1") -> bool:
    """True once host:port accepts a connection; False if pid died or time ran out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return False
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False
