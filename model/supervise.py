"""One node of a multi-node run, watched: the training runs in a child process,
and its end is said in one line that names the node that failed.

JAX's distributed runtime ends a process whose peer died by aborting it from
C++ (SIGABRT, a stack trace on stderr), after the heartbeat timeout
(model.distributed.HEARTBEAT_S): Python can neither catch that nor print one
line. So ``python -m model train --nodes N`` (N > 1) runs itself again as a
child, passes its stdout through, keeps its stderr (the runtime's messages
name the task, i.e. the node, that stopped answering) and ends with one
``error:`` line and exit 1. The runtime's own messages go to the run folder's
``runtime.log`` (model.run_files.RUNTIME_LOG), not to the log.

Standard library only: the watcher never starts JAX.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

from model import run_files
from model.distributed import Cluster

CHILD = "TRAINBOX_NODE_CHILD"  # set in the child's environment: it trains, never supervises
_CXX_LOG = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d")
_NOISE = ("WARNING: All log messages before absl::InitializeLog()", "    @ ", "*** Check failure stack trace")
_DEAD_TASK = (
    re.compile(r"Task (\d+) heartbeat timeout"),
    re.compile(r"unhealthy \(stopped sending heartbeats\):\s*\n(\d+)"),
    re.compile(r"/task:(\d+).{0,80}(?:heartbeat|unavailable|disconnected)", re.I),
)
_COORDINATOR_GONE = re.compile(r"coordination service|PollForError|connect to the coordinator|Failed to connect", re.I)


def blamed(text: str, c: Cluster) -> int | None:
    """The node the runtime says stopped answering (not this one), from its messages; None if it names none."""
    for pattern in _DEAD_TASK:
        for m in pattern.finditer(text):
            n = int(m.group(1))
            if n != c.node and 0 <= n < c.nodes:
                return n
    return None


def verdict(rc: int, stderr: str, own_error: str | None, c: Cluster) -> tuple[int, str | None]:
    """The exit code and the one error line of a child that ended with rc (None: it succeeded)."""
    if rc == 0:
        return 0, None
    where = f"this is node {c.node} of {c.nodes}; each node's log is in its run folder"
    other = blamed(stderr, c)
    if other is not None:
        why = f" (here: {own_error.removeprefix('error: ')})" if own_error else ""
        return 1, (
            f"error: node {other} of {c.nodes} failed or stopped answering, so the run ended on every node{why}; "
            f"{where}: see node {other}'s log"
        )
    if own_error and rc in (1, 2):
        return rc, f"{own_error} ({where})"
    if c.node != 0 and _COORDINATOR_GONE.search(stderr):
        return 1, (
            f"error: node 0 (the coordinator, {c.coordinator}) failed or stopped answering, so the run ended "
            f"on every node; {where}: see node 0's log"
        )
    how = (
        f"killed by {signal.Signals(-rc).name}" if rc < 0 and -rc in signal.Signals._value2member_map_ else f"exit {rc}"
    )
    return 1, (
        f"error: training failed on node {c.node} of {c.nodes} ({how}"
        + (f": {own_error.removeprefix('error: ')}" if own_error else "")
        + f"); {where}"
    )


def _die_with_parent() -> None:
    """In the child, before exec: the kernel kills it when the watcher dies (a
    node killed is a node gone, not a trainer orphaned and training on)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG (Linux)
    except (OSError, AttributeError):
        pass


def run_node(argv: list[str], c: Cluster, out: str) -> int:
    """Train in a child (``python -m model`` argv) and watch it; its exit code, the error said in one line."""
    env = {**os.environ, CHILD: "1"}
    child = subprocess.Popen(
        [sys.executable, "-m", "model", *argv],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
        bufsize=1,
        preexec_fn=_die_with_parent if sys.platform == "linux" else None,
    )

    def forward(signum, frame):  # `remote stop` signals the whole group; a lone signal to this process goes on
        child.send_signal(signum)

    for s in (signal.SIGTERM, signal.SIGINT):
        signal.signal(s, forward)
    kept: list[str] = []
    own_error = None
    runtime = False  # from the runtime's first C++ message on, its lines go to runtime.log only
    for line in child.stderr:
        kept.append(line)
        if line.startswith("error: "):
            own_error = line.strip()
            continue
        if _CXX_LOG.match(line) or line.startswith(_NOISE[2]):
            runtime = True
        if runtime or line.startswith(_NOISE):
            continue
        sys.stderr.write(line)
        sys.stderr.flush()
    rc = child.wait()
    text = "".join(kept)
    code, message = verdict(rc, text, own_error, c)
    if message:
        try:
            os.makedirs(out, exist_ok=True)
            with open(os.path.join(out, run_files.RUNTIME_LOG), "w") as f:
                f.write(text)
        except OSError:
            pass
        print(message, file=sys.stderr, flush=True)
    return code
