"""A run folder on the box, as its files say (box/layout.py names them): started, finished,
stopped by the user, of which boot; its events. Standard library only: box/agent.py resumes
and asks runs to save through it, box/keep.py mirrors and restores them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass

from box.layout import (
    RUN_BOOT_ID,
    RUN_EVENTS,
    RUN_EXIT_CODE,
    RUN_PID,
    RUN_SAVE_REQUEST,
    RUN_SCRIPT,
    RUN_STOPPED,
)

EVENTS = RUN_EVENTS
SAVE_REQUEST = RUN_SAVE_REQUEST


@dataclass(frozen=True)
class RunFolder:
    path: str

    def _has(self, name: str) -> bool:
        return os.path.exists(os.path.join(self.path, name))

    def _read(self, name: str) -> str | None:
        try:
            with open(os.path.join(self.path, name)) as f:
                return f.read().strip()
        except OSError:
            return None

    @property
    def started(self) -> bool:
        return self._has(RUN_PID) and self._has(RUN_SCRIPT)

    @property
    def finished(self) -> bool:
        return self._has(RUN_EXIT_CODE)

    @property
    def stopped_by_user(self) -> bool:
        return self._has(RUN_STOPPED)

    @property
    def boot_id(self) -> str | None:
        return self._read(RUN_BOOT_ID)

    def interrupted(self, boot: str) -> bool:
        """Cut off by the end of an earlier boot, and not by the user."""
        return self.started and not self.finished and not self.stopped_by_user and self.boot_id != boot

    def left_by_user(self, boot: str) -> bool:
        """Stopped by the user (`remote stop`) in an earlier boot, never finished: not resumed."""
        return self.started and not self.finished and self.stopped_by_user and self.boot_id != boot

    def going(self, boot: str) -> bool:
        """Started in this boot and not over (whether or not it still runs: a save request costs nothing)."""
        return self.started and not self.finished and not self.stopped_by_user and self.boot_id == boot

    def record(self, event: str, **fields) -> None:
        line = json.dumps({"event": event, "at": round(time.time(), 3), **fields})
        fd = os.open(os.path.join(self.path, EVENTS), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)

    def events(self) -> list[dict]:
        text = self._read(EVENTS) or ""
        out = []
        for line in text.splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue  # a line cut by a power loss
        return out

    def still_asked(self) -> bool:
        """A save request not yet answered (the model removes it once saved) by a run still going."""
        if not self._has(SAVE_REQUEST) or self.finished:
            return False
        try:
            pid = int(self._read(RUN_PID) or 0)
        except ValueError:
            return False
        if pid <= 1:
            return False
        try:
            os.kill(pid, 0)  # signal 0 sends nothing: is this boot's job still there?
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        return True

    def ask_to_save(self) -> None:
        fd = os.open(os.path.join(self.path, SAVE_REQUEST), os.O_WRONLY | os.O_CREAT, 0o600)
        os.close(fd)


def run_folders(runs: str) -> list[RunFolder]:
    try:
        names = sorted(os.listdir(runs))
    except FileNotFoundError:
        return []
    return [
        RunFolder(os.path.join(runs, n))
        for n in names
        if os.path.isdir(os.path.join(runs, n)) and not n.startswith(".")
    ]


def detach(argv: list[str], cwd: str) -> subprocess.Popen:
    """Start argv detached (a new session, no terminal, its output discarded), as the job machinery
    does. The agent ignores SIGCHLD (the kernel reaps what it starts); the child gets the default
    back, or every wait in it would fail with ECHILD (uv's does: "No child processes")."""
    with open(os.devnull, "rb") as nul_in, open(os.devnull, "wb") as nul_out:
        return subprocess.Popen(
            argv,
            cwd=cwd,
            stdin=nul_in,
            stdout=nul_out,
            stderr=nul_out,
            start_new_session=True,
            close_fds=True,
            preexec_fn=_default_sigchld,  # noqa: PLW1509 (the agent has no threads)
        )


def _default_sigchld() -> None:
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
