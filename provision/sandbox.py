"""The sandbox: the whole flow with no AWS account, on this machine.

AWS is a moto server on 127.0.0.1 (boto3 reaches it through its endpoint
URL and runs exactly the code it runs against AWS); the "instance" is a real
OpenSSH sshd on 127.0.0.1 that accepts only the key pair that ``up``
created; the box's disk is a directory under TRAINBOX_HOME/sandbox.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

from box import layout as names
from box.layout import BoxLayout
from common import paths
from common.errors import TrainboxError

from . import procs, sshd

REGION = "us-east-1"


def _moto_dir() -> Path:
    d = paths.sandbox_dir() / "moto"
    d.mkdir(parents=True, exist_ok=True)
    return d


def moto_endpoint() -> str | None:
    """The running sandbox moto server's URL, or None."""
    f = _moto_dir() / "server.json"
    if not f.exists():
        return None
    info = json.loads(f.read_text())
    return info["endpoint"] if procs.alive(info["pid"]) else None


def endpoint() -> str | None:
    """The sandbox's AWS: AWS_ENDPOINT_URL if the caller runs its own moto
    server (tests do; trainbox never stops it), else trainbox's own, if running."""
    return os.environ.get("AWS_ENDPOINT_URL") or moto_endpoint()


def ensure_moto() -> str:
    endpoint = moto_endpoint()
    if endpoint:
        return endpoint
    d = _moto_dir()
    port = procs.free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    pid = procs.spawn([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], d / "moto.log", env)
    if not procs.wait_for_port(port, pid, timeout=30):
        procs.terminate(pid)
        raise TrainboxError(
            "the sandbox's moto server did not start", f"is moto[server] installed? see {d / 'moto.log'}"
        )
    endpoint = f"http://127.0.0.1:{port}"
    (d / "server.json").write_text(json.dumps({"pid": pid, "port": port, "endpoint": endpoint}))
    return endpoint


def stop_moto() -> None:
    f = _moto_dir() / "server.json"
    if f.exists():
        procs.terminate(json.loads(f.read_text())["pid"])
        f.unlink()


def box_dir(name: str) -> Path:
    return paths.sandbox_dir() / "boxes" / name


def box_workdir(name: str) -> Path:
    """Where trainbox keeps code, data and runs on the sandbox's box."""
    d = box_dir(name) / "disk"
    d.mkdir(parents=True, exist_ok=True)
    return d


def start_box(name: str, key_file: Path) -> sshd.SshServer:
    """Boot the sandbox box: its sshd, admitting exactly the box's key pair."""
    d = box_dir(name) / "sshd"
    # A restarted box keeps its port when it is free, so addresses the user
    # wrote down (ssh-config, editors' Remote-SSH) keep working.
    port_file = box_dir(name) / "port"
    previous = int(port_file.read_text()) if port_file.exists() else None
    server = sshd.start(d, [sshd.public_key_line(key_file)], port=previous)
    port_file.write_text(str(server.port))
    return server


def _kill_jobs(name: str) -> None:
    """A stopped instance runs nothing: end the box's detached jobs and its Jupyter too."""
    layout = BoxLayout(str(box_workdir(name)))
    jupyter = Path(layout.jupyter) / "pid"
    for pid_file in [*Path(layout.runs).glob(f"*/{names.RUN_PID}"), jupyter]:
        if not pid_file.exists():
            continue
        try:
            pid = int(pid_file.read_text().strip())
        except ValueError:
            continue
        if procs.alive(pid):
            procs.terminate(pid, group=True)
    jupyter.unlink(missing_ok=True)  # a later process with that pid is not ours


def stop_box(name: str) -> None:
    _kill_jobs(name)
    sshd.stop(box_dir(name) / "sshd")


def remove_box(name: str) -> None:
    """Terminate: stop it and wipe its disk."""
    stop_box(name)
    shutil.rmtree(box_dir(name), ignore_errors=True)


def box_running(name: str) -> sshd.SshServer | None:
    return sshd.running(box_dir(name) / "sshd")


def sandbox_boxes() -> list[str]:
    root = paths.sandbox_dir() / "boxes"
    return sorted(p.name for p in root.iterdir()) if root.exists() else []
