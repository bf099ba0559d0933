"""Helpers the tests share (imported by name: `from testkit import ...`).

They live here rather than in conftest.py because several conftest.py files
exist under tests/, and `from conftest import` would get whichever was
imported last.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Result:
    code: int
    out: str
    err: str


def _cli(argv: tuple[str, ...], env: dict | None) -> tuple[list[str], dict]:
    """The command line and environment of `python -m <argv...>` (or the `remote` CLI)."""
    full_env = {**os.environ, **(env or {})}
    full_env["PYTHONPATH"] = str(REPO) + os.pathsep + full_env.get("PYTHONPATH", "")
    if argv[0] == "remote":
        return [sys.executable, "-m", "remote", *argv[1:]], full_env
    return [sys.executable, "-m", *argv], full_env


def run_cli(*argv: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 600) -> Result:
    """Run `python -m <argv...>` (or the `remote` CLI) as a user would, in a subprocess."""
    cmd, full_env = _cli(argv, env)
    p = subprocess.run(cmd, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)
    return Result(p.returncode, p.stdout, p.stderr)


def start_cli(*argv: str, out: Path, cwd: Path | None = None, env: dict | None = None) -> subprocess.Popen:
    """Start a long-running CLI command (a tunnel, a follower); stdout and stderr go
    to ``out`` and ``out.err``. The caller ends it (``proc.terminate()``)."""
    cmd, full_env = _cli(argv, env)
    with open(out, "w") as o, open(f"{out}.err", "w") as e:
        return subprocess.Popen(cmd, cwd=cwd, env=full_env, stdout=o, stderr=e, stdin=subprocess.DEVNULL)


def listening(pid: int) -> set[tuple[str, int]]:
    """The (address, port) pairs on which process pid has TCP sockets listening."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    found = set()
    for table, width in (("tcp", 4), ("tcp6", 16)):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            local, st, inode = fields[1], fields[3], fields[9]
            if st != "0A" or inode not in inodes:  # 0A: LISTEN
                continue
            hexaddr, hexport = local.split(":")
            raw = bytes.fromhex(hexaddr)
            # /proc/net prints each 32-bit word in host (little-endian) order.
            raw = b"".join(raw[i : i + 4][::-1] for i in range(0, width, 4))
            found.add((str(ipaddress.ip_address(raw)), int(hexport, 16)))
    return found


def processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes that mention text (e.g. a temp TRAINBOX_HOME)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if text in cmdline and ") Z " not in stat:
            found.append(f"{entry.name}: {cmdline.strip()}")
    return found


def tagged(endpoint: str) -> list:
    """Every trainbox-tagged resource the moto server at endpoint holds."""
    from common.aws import Cloud
    from provision.inventory import tagged_resources

    ec2 = Cloud("us-east-1", endpoint).client("ec2")
    return [r for r in tagged_resources(ec2, "us-east-1") if not (r.kind == "instance" and r.state == "terminated")]


def wait_for(what: str, check, timeout: float = 120.0, every: float = 0.05):
    """Poll check() until it returns something truthy; fail naming what never happened.

    Polling with a deadline, never a fixed sleep, is how tests wait for the box.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def synth_image_set(dest: Path, n: int = 20, size: int = 32) -> Path:
    """A generated two-class image set in the course's layout (seconds to train)."""
    subprocess.run(
        [sys.executable, "-m", "model", "synth", "--out", str(dest), "--n", str(n), "--image-size", str(size)],
        check=True,
        capture_output=True,
        cwd=REPO,
    )
    return dest


def one_line_error(result: Result) -> str:
    """The run's only stderr line (an error is one line, never a traceback);
    a run's error may be followed by one line saying whose exit code it is
    (``remote: ...``, common/errors.py)."""
    lines = [l for l in result.err.strip().splitlines() if l.strip()]
    if len(lines) == 2 and lines[1].startswith("remote: "):
        lines = lines[:1]
    assert len(lines) == 1, result.err
    assert "Traceback" not in result.err
    return lines[0]


def files_containing(root: Path, needle: bytes) -> list[str]:
    """Every file under root (links aside) that holds needle: where a secret must never be."""
    return [str(p) for p in root.rglob("*") if p.is_file() and not p.is_symlink() and needle in p.read_bytes()]


@contextlib.contextmanager
def served_tar_gz(root: Path, top: str = "set"):
    """root as TOP.tar.gz behind a file server on 127.0.0.1; yields its URL."""
    import http.server
    import io
    import tarfile
    import threading

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(root, arcname=top)
    body = buf.getvalue()

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            if self.path != f"/{top}.tar.gz":
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/{top}.tar.gz"
    finally:
        server.shutdown()
        server.server_close()


def refused(port: int) -> bool:
    """Nothing listens on 127.0.0.1:port any more (a connection is refused)."""
    import socket

    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


_WRITE_EVENTS = """
import sys, time
sys.modules["tensorflow"] = None  # TensorBoard's own no-TensorFlow mode: its writer without TF's import time
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.summary.writer.event_file_writer import EventFileWriter
w = EventFileWriter(sys.argv[1])
for step in range(3):
    value = summary_pb2.Summary.Value(tag="epoch_loss", simple_value=1.0 / (step + 1))
    w.add_event(event_pb2.Event(wall_time=time.time(), step=step, summary=summary_pb2.Summary(value=[value])))
w.close()
"""


def write_tb_events(folder: Path) -> None:
    """Three epochs of a loss in folder, written by TensorBoard's own event writer (a second)."""
    subprocess.run([sys.executable, "-c", _WRITE_EVENTS, str(folder)], check=True, capture_output=True, timeout=60)


def http_get(url: str) -> bytes | None:
    """The body of a 200 answer, or None (nothing answers yet, or another status)."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.read() if r.status == 200 else None
    except (urllib.error.URLError, ConnectionError):
        return None


def tb_runs(port: int):
    """A check for wait_for: the run names TensorBoard on 127.0.0.1:port serves, once it serves some."""
    import json

    def check():
        body = http_get(f"http://127.0.0.1:{port}/data/runs")
        return json.loads(body) if body and json.loads(body) else None

    return check
